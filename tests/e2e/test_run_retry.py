"""``accord runs retry RUN [--from STEP]`` and ``accord runs rerun RUN`` against the real
coordinator: a retry reuses the recorded outputs of the steps upstream of (or beside) the one it
retries from, without calling their agents again, marks them reused in every view, stays pinned
to the original run's contract versions even after a newer one is registered, and runs the rest."""

from __future__ import annotations

import json
from collections import Counter

from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
from tests.support.agent import Call, TaskFailed
from tests.support.scenario import contract, start_run, step, wait_run

# a -> b -> c, and d beside them
WORKFLOW = """
workflow: payments/chain
input: {type: object, required: [order_id], properties: {order_id: {type: string}}}
steps:
  a:
    contract: payments/work@^1
    input: {order_id: "${input.order_id}-a"}
  b:
    contract: payments/work@^1
    input: {order_id: "${steps.a.output.ref}-b"}
  c:
    contract: payments/work@^1
    input: {order_id: "${steps.b.output.ref}-c"}
  d:
    contract: payments/work@^1
    input: {order_id: "${input.order_id}-d"}
output: {c: "${steps.c.output.ref}", d: "${steps.d.output.ref}"}
"""


async def test_retry_from_the_failed_step_reuses_earlier_outputs(coordinator, test_agent):
    token = await coordinator.create_team("payments")
    await coordinator.register_contract(token, contract("payments/work"))
    await coordinator.register_workflow(token, WORKFLOW)
    calls: Counter[str] = Counter()
    broken = {"b": True}

    async def work(call: Call):
        which = call.input["order_id"].rsplit("-", 1)[1]
        calls[which] += 1
        if which == "b" and broken["b"]:
            raise TaskFailed("Broken", "b is broken today", retryable=False)
        return {"ref": call.input["order_id"]}

    await test_agent(token, "payments", {"payments/work@1": work})
    async with coordinator.client(token) as client:
        original = await wait_run(
            client, (await start_run(client, "payments/chain", {"order_id": "o"})).run.run_id
        )
    assert original.status == pb.RUN_STATUS_FAILED and step(original, "b").status == pb.STEP_STATUS_FAILED
    assert calls == Counter({"a": 1, "b": 1, "d": 1})

    # A newer version of the contract: the retry stays on the version the original pinned.
    await coordinator.register_contract(token, contract("payments/work", "1.1.0"))
    refused = await coordinator.acli("runs", "retry", original.run_id, "--from", "nope", token=token)
    assert refused.returncode == 2 and "no such step" in refused.stderr and "a, b, c, d" in refused.stderr, (
        refused
    )

    broken["b"] = False
    result = await coordinator.acli("runs", "retry", original.run_id, token=token)
    assert result.returncode == 0, result
    retry_id = result.stdout.strip()
    async with coordinator.client(token) as client:
        retried = await wait_run(client, retry_id)
    assert retried.status == pb.RUN_STATUS_SUCCEEDED, retried
    assert retried.retry_of == original.run_id
    assert dict(retried.pinned_versions) == {"payments/work": "1.0.0"}
    assert json.loads(retried.output_json) == {"c": "o-a-b-c", "d": "o-d"}
    assert calls == Counter({"a": 1, "b": 2, "c": 1, "d": 1})  # a and d were not called again
    assert {s.id: s.reused_from for s in retried.steps} == {
        "a": original.run_id,
        "b": "",
        "c": "",
        "d": original.run_id,
    }
    assert not step(retried, "a").attempts and json.loads(step(retried, "a").output_json) == {"ref": "o-a"}

    shown = await coordinator.acli("runs", "show", retry_id, token=token)
    assert f"retry of  {original.run_id}" in shown.stdout, shown.stdout
    assert shown.stdout.count(f"reused from {original.run_id}") == 2, shown.stdout
    as_json = json.loads((await coordinator.acli("runs", "show", retry_id, "--json", token=token)).stdout)
    assert {s["id"]: s["reused_from"] for s in as_json["steps"]}["d"] == original.run_id

    # --from a: a and everything downstream of it run again; d beside them is reused.
    result = await coordinator.acli("runs", "retry", retry_id, "--from", "a", "--json", token=token)
    assert result.returncode == 0, result
    again_id = json.loads(result.stdout)["run_id"]
    async with coordinator.client(token) as client:
        again = await wait_run(client, again_id)
    assert again.status == pb.RUN_STATUS_SUCCEEDED, again
    assert calls == Counter({"a": 2, "b": 3, "c": 2, "d": 1})
    assert {s.id: s.reused_from for s in again.steps} == {"a": "", "b": "", "c": "", "d": retry_id}

    async with coordinator.client(token) as client:
        trace = await client.coordinator.GetRunTrace(pb.GetRunTraceRequest(run_id=retry_id))
    reused_spans = {
        s.name
        for s in trace.spans
        if json.loads(s.attributes_json or "{}").get("accord.reused_from") == original.run_id
    }
    assert reused_spans == {"step a", "step d"}, [(s.name, s.attributes_json) for s in trace.spans]

    nothing = await coordinator.acli("runs", "retry", again_id, token=token)
    assert nothing.returncode != 0 and "nothing to retry" in nothing.stderr, nothing


async def test_rerun_starts_anew_from_the_stored_input_and_a_live_run_is_not_retried(coordinator, test_agent):
    token = await coordinator.create_team("payments")
    await coordinator.register_contract(token, contract("payments/work"))
    await coordinator.register_workflow(token, WORKFLOW)
    calls: Counter[str] = Counter()

    async def work(call: Call):
        calls[call.input["order_id"]] += 1
        return {"ref": call.input["order_id"]}

    await test_agent(token, "payments", {"payments/work@1": work})
    async with coordinator.client(token) as client:
        first = await wait_run(
            client, (await start_run(client, "payments/chain", {"order_id": "o"})).run.run_id
        )
    result = await coordinator.acli("runs", "rerun", first.run_id, token=token)
    assert result.returncode == 0, result
    async with coordinator.client(token) as client:
        second = await wait_run(client, result.stdout.strip())
    assert second.run_id != first.run_id and second.status == pb.RUN_STATUS_SUCCEEDED
    assert json.loads(second.input_json) == {"order_id": "o"} and not second.retry_of
    assert calls["o-a"] == 2 and all(not s.reused_from for s in second.steps)

    await coordinator.register_workflow(
        token, "workflow: payments/hold\nsteps:\n  ok:\n    wait_for: {approval: {}}\noutput: {}\n"
    )
    async with coordinator.client(token) as client:
        held = (await start_run(client, "payments/hold", {})).run.run_id
    live = await coordinator.acli("runs", "retry", held, token=token)
    assert live.returncode != 0 and "is still running" in live.stderr, live

    stranger = await coordinator.create_team("sales")
    refused = await coordinator.acli("runs", "retry", first.run_id, "--from", "a", token=stranger)
    assert refused.returncode == 3, refused
