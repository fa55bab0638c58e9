"""Timers survive a kill -9 of the coordinator: a retry waiting out its backoff, an attempt
waiting on its start-to-close deadline, an attempt whose agent went silent (heartbeat timeout)
and a task no agent takes (schedule-to-start) are all pending at the crash; after the restart on
the same database each timer fires, from the restarted coordinator, no earlier than it was due."""

from __future__ import annotations

import asyncio
import json
import os
import random
import time

from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
from tests.support.agent import Call, TaskFailed
from tests.support.scenario import contract, start_run, step, wait_run
from tests.support.soak import sized

# Every timer must still be pending when the test crashes the coordinator, after it has started
# the four runs and seen each reach its state: long enough for a loaded machine to get there.
BACKOFF_S = 8.0
CLOSE_S = 8.0
HEARTBEAT_S = 6.0
S2S_S = 8.0

CONTRACTS = {
    # fails once (retryable), retried after a long backoff
    "backoff": f"retry: {{max_attempts: 3, initial_backoff: {BACKOFF_S:g}s}}\ntimeouts: {{heartbeat: 30s}}\n",
    # the first attempt never ends but keeps heartbeating: only start-to-close can end it
    "close": f"timeout: {CLOSE_S:g}s\ntimeouts: {{heartbeat: 30s}}\nretry: {{max_attempts: 2, initial_backoff: 10ms}}\n",
    # the first attempt's agent goes silent: only the heartbeat timeout can end it
    "silent": f"timeouts: {{heartbeat: {HEARTBEAT_S:g}s}}\nretry: {{max_attempts: 2, initial_backoff: 10ms}}\n",
    # no agent serves it
    "unserved": f"timeouts: {{schedule_to_start: {S2S_S:g}s}}\n",
}


def _workflow(name: str) -> str:
    return (
        f"workflow: payments/wf-{name}\n"
        "input: {type: object, required: [order_id], properties: {order_id: {type: string}}}\n"
        "steps:\n"
        "  work:\n"
        f"    contract: payments/{name}@^1\n"
        '    input: {order_id: "${input.order_id}"}\n'
        'output: {ref: "${steps.work.output.ref}"}\n'
    )


async def _until(what: str, check, within: float = 60.0):
    deadline = time.monotonic() + within
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {within}s: {what}")
        await asyncio.sleep(0.05)


async def test_retry_backoff_and_timeouts_pending_at_kill_9_fire_after_restart(coordinator, test_agent):
    token = await coordinator.create_team("payments")
    for name, extra in CONTRACTS.items():
        await coordinator.register_contract(token, contract(f"payments/{name}", extra=extra))
        await coordinator.register_workflow(token, _workflow(name))

    entered: dict[str, asyncio.Event] = {name: asyncio.Event() for name in ("close", "silent")}

    async def backoff(call: Call):
        if call.attempt == 1:
            raise TaskFailed("Flaky", "first attempt fails", retryable=True)
        return {"ref": f"backoff-{call.attempt}"}

    async def close(call: Call):
        if call.attempt == 1:
            entered["close"].set()
            await asyncio.sleep(3600)  # heartbeats keep flowing
        return {"ref": f"close-{call.attempt}"}

    async def silent(call: Call):
        if call.attempt == 1:
            call.stop_heartbeats()
            entered["silent"].set()
            await asyncio.sleep(3600)
        return {"ref": f"silent-{call.attempt}"}

    await test_agent(
        token,
        "payments",
        {"payments/backoff@1": backoff, "payments/close@1": close, "payments/silent@1": silent},
        concurrency=8,
        heartbeat_s=0.2,
    )

    async with coordinator.client(token) as client:
        run_ids = {
            name: (await start_run(client, f"payments/wf-{name}", {"order_id": name})).run.run_id
            for name in CONTRACTS
        }

        async def get(name: str) -> pb.Run:
            return (await client.coordinator.GetRun(pb.GetRunRequest(run_id=run_ids[name]))).run

        async def backoff_waiting():
            work = step(await get("backoff"), "work")
            return (
                work.status == pb.STEP_STATUS_SCHEDULED
                and [a.status for a in work.attempts] == [pb.ATTEMPT_STATUS_FAILED]
                and work
            )

        async def running(name: str):
            work = step(await get(name), "work")
            return [a.status for a in work.attempts] == [pb.ATTEMPT_STATUS_RUNNING] and work

        async def unserved_waiting():
            work = step(await get("unserved"), "work")
            return [a.status for a in work.attempts] == [pb.ATTEMPT_STATUS_SCHEDULED] and work

        await asyncio.wait_for(entered["close"].wait(), 20)
        await asyncio.wait_for(entered["silent"].wait(), 20)
        before = {
            "backoff": await _until("backoff step waiting to retry", backoff_waiting),
            "close": await _until("close attempt running", lambda: running("close")),
            "silent": await _until("silent attempt running", lambda: running("silent")),
            "unserved": await _until("unserved attempt scheduled", unserved_waiting),
        }

    crash_ms = int(time.time() * 1000)
    await asyncio.to_thread(coordinator.kill9)
    # Every timer was still pending when the coordinator died.
    retry_due = before["backoff"].next_attempt_unix_ms
    close_due = before["close"].attempts[0].started_unix_ms + int(CLOSE_S * 1000)
    silent_due = before["silent"].attempts[0].started_unix_ms + int(HEARTBEAT_S * 1000)
    s2s_due = before["unserved"].attempts[0].scheduled_unix_ms + int(S2S_S * 1000)
    assert min(retry_due, close_due, silent_due, s2s_due) > crash_ms, (
        "the crash came too late: a timer was already due",
        crash_ms,
        retry_due,
        close_due,
        silent_due,
        s2s_due,
    )
    await asyncio.to_thread(coordinator.restart)

    async with coordinator.client(token) as client:
        runs = {name: await wait_run(client, run_id, within=40) for name, run_id in run_ids.items()}

    # The retry waiting out its backoff happened, after the backoff, from the restarted coordinator.
    run = runs["backoff"]
    assert run.status == pb.RUN_STATUS_SUCCEEDED, run
    first, second = step(run, "work").attempts
    assert first.status == pb.ATTEMPT_STATUS_FAILED and first.error.type == "Flaky"
    assert second.status == pb.ATTEMPT_STATUS_SUCCEEDED
    assert second.scheduled_unix_ms >= retry_due - 50 and second.scheduled_unix_ms > crash_ms
    assert json.loads(run.output_json) == {"ref": "backoff-2"}

    # The start-to-close deadline fired although the attempt kept heartbeating.
    run = runs["close"]
    assert run.status == pb.RUN_STATUS_SUCCEEDED, run
    first, second = step(run, "work").attempts
    assert first.status == pb.ATTEMPT_STATUS_TIMED_OUT and first.error.type == "StartToCloseTimeout", first
    assert first.finished_unix_ms >= close_due - 50 and first.finished_unix_ms > crash_ms
    assert second.status == pb.ATTEMPT_STATUS_SUCCEEDED
    assert json.loads(run.output_json) == {"ref": "close-2"}

    # The silent agent's lease expired after the restart.
    run = runs["silent"]
    assert run.status == pb.RUN_STATUS_SUCCEEDED, run
    first, second = step(run, "work").attempts
    assert first.status == pb.ATTEMPT_STATUS_TIMED_OUT and first.error.type == "HeartbeatTimeout", first
    assert first.finished_unix_ms > crash_ms
    assert second.status == pb.ATTEMPT_STATUS_SUCCEEDED
    assert json.loads(run.output_json) == {"ref": "silent-2"}

    # Nobody took the unserved task: schedule-to-start fired (not retryable) and failed the run.
    run = runs["unserved"]
    assert run.status == pb.RUN_STATUS_FAILED, run
    (only,) = step(run, "work").attempts
    assert only.status == pb.ATTEMPT_STATUS_TIMED_OUT and only.error.type == "ScheduleToStartTimeout", only
    assert only.finished_unix_ms >= s2s_due - 50 and only.finished_unix_ms > crash_ms
    assert run.error.type == "ScheduleToStartTimeout"


# ---------------------------------------------------------------- kill -9 at random points

# Short timers, so that several runs of each kind have their timers pending at random moments.
# One more attempt than a run needs (two): a task claimed for the agent's poll just before a kill
# may never reach it (see ``cut_by_a_kill``), and its timer then ends an attempt as well.
CHAOS = {
    "backoff": (1.5, "retry: {max_attempts: 4, initial_backoff: 1500ms}\ntimeouts: {heartbeat: 30s}\n"),
    "close": (
        2.0,
        "timeout: 2s\ntimeouts: {heartbeat: 30s}\nretry: {max_attempts: 4, initial_backoff: 10ms}\n",
    ),
    "silent": (1.5, "timeouts: {heartbeat: 1500ms}\nretry: {max_attempts: 4, initial_backoff: 10ms}\n"),
    "unserved": (2.0, "timeouts: {schedule_to_start: 2s}\n"),
}
# How long before a kill a claim may have been made whose answer the kill cut off (the claim is
# committed, then answered within milliseconds; seconds on a loaded machine).
CUT_WINDOW_MS = 5000


@sized("runs_per_kind, kills", short=(3, 3), soak=(12, 12))
async def test_kill_9_at_random_points_fires_every_timer_once_and_never_early(
    coordinator, test_agent, runs_per_kind, kills
):
    """Runs of four kinds start in waves while the coordinator is killed with -9 and restarted
    at random moments (the seed is in the failure message; ACCORD_CHAOS_SEED replays it). Every
    run's timer fires exactly once (one timed-out or retried attempt, never two) and no earlier
    than it was due, whichever process armed it and whichever fired it. No result the agent sent
    is lost; the only attempts beyond the two a run needs are tasks whose delivery a kill cut off
    (the agent never got them), and those end by their own timer, never early."""
    seed = int(os.environ.get("ACCORD_CHAOS_SEED") or time.time_ns() % 1_000_000)
    rng = random.Random(seed)
    token = await coordinator.create_team("payments")
    for name, (_, extra) in CHAOS.items():
        await coordinator.register_contract(token, contract(f"payments/c-{name}", extra=extra))
        await coordinator.register_workflow(token, _workflow(f"c-{name}"))

    # The first attempt the agent gets of a step misbehaves, whatever its number (an earlier one
    # may never have reached the agent); the next one succeeds.
    begun: set[str] = set()

    def first(call: Call) -> bool:
        is_first = call.key not in begun
        begun.add(call.key)
        return is_first

    async def backoff(call: Call):
        if first(call):
            raise TaskFailed("Flaky", "first attempt fails", retryable=True)
        return {"ref": f"backoff-{call.attempt}"}

    async def close(call: Call):
        if first(call):
            await asyncio.sleep(3600)  # heartbeats keep flowing; start-to-close ends it
        return {"ref": f"close-{call.attempt}"}

    async def silent(call: Call):
        if first(call):
            call.stop_heartbeats()
            await asyncio.sleep(3600)  # this worker stays busy for good
        return {"ref": f"silent-{call.attempt}"}

    agent = await test_agent(
        token,
        "payments",
        {"payments/c-backoff@1": backoff, "payments/c-close@1": close, "payments/c-silent@1": silent},
        concurrency=6 * runs_per_kind,
        heartbeat_s=0.2,
    )

    run_ids: dict[str, list[str]] = {name: [] for name in CHAOS}

    async def start_waves() -> None:
        for wave in range(runs_per_kind):
            for name in CHAOS:
                while True:
                    try:
                        async with coordinator.client(token) as client:
                            answer = await start_run(
                                client,
                                f"payments/wf-c-{name}",
                                {"order_id": f"{name}-{wave}"},
                                key=f"{name}-{wave}",
                            )
                        break
                    except Exception:  # the coordinator is down: the same key retries safely
                        await asyncio.sleep(0.05)
                run_ids[name].append(answer.run.run_id)
            await asyncio.sleep(rng.uniform(0.2, 0.8))

    async def kill_at_random() -> list[float]:
        killed_at = []
        for _ in range(kills):
            await asyncio.sleep(rng.uniform(0.3, 1.5))
            killed_at.append(time.time())
            await asyncio.to_thread(coordinator.restart)  # kill -9, then start on the same database
        return killed_at

    _, killed_at = await asyncio.gather(start_waves(), kill_at_random())
    where = f"(seed {seed}: ACCORD_CHAOS_SEED={seed} replays it; kills at {killed_at})"

    async with coordinator.client(token) as client:
        runs = {
            name: [await wait_run(client, run_id, within=60) for run_id in ids]
            for name, ids in run_ids.items()
        }
    got = {r.attempt_id for r in agent.records}

    def told(run: pb.Run) -> str:
        """What a failure message needs: the run's attempts and what the agent saw of them."""
        made = step(run, "work").attempts
        ids = {a.attempt_id for a in made}
        attempts_seen = [
            (a.number, pb.AttemptStatus.Name(a.status), a.error.type, a.started_unix_ms) for a in made
        ]
        agent_saw = [(r.attempt, r.outcome, r.accepted) for r in agent.records if r.attempt_id in ids]
        return (
            f"{run.run_id} {pb.RunStatus.Name(run.status)}: attempts {attempts_seen}; "
            f"the agent saw {agent_saw} {where}"
        )

    def cut_by_a_kill(attempt: pb.Attempt) -> bool:
        """Claimed for the agent's poll and committed, and the kill came before the answer: the
        agent never got the task. Delivery is at least once (docs/concepts.md): the attempt's
        lease or start-to-close deadline ends it, as for an agent that vanished."""
        return attempt.attempt_id not in got and any(
            0 <= kill * 1000 - attempt.started_unix_ms <= CUT_WINDOW_MS for kill in killed_at
        )

    def attempts(run: pb.Run, timer_ms: int) -> tuple[pb.Attempt, pb.Attempt]:
        """The two attempts the agent got (a misbehaving one, then a success); any other must
        have been cut off by a kill and ended by its timer no earlier than due."""
        assert run.status == pb.RUN_STATUS_SUCCEEDED, told(run)
        made = list(step(run, "work").attempts)
        kept = [a for a in made if a.attempt_id in got]
        for lost in (a for a in made if a.attempt_id not in got):
            assert cut_by_a_kill(lost), ("an attempt the agent never got, far from any kill", told(run))
            assert lost.status == pb.ATTEMPT_STATUS_TIMED_OUT, told(run)
            assert lost.finished_unix_ms >= lost.started_unix_ms + timer_ms, told(run)
        assert len(kept) == 2 and kept[1].status == pb.ATTEMPT_STATUS_SUCCEEDED, told(run)
        return kept[0], kept[1]

    backoff_ms = int(CHAOS["backoff"][0] * 1000)
    for run in runs["backoff"]:
        first_one, second = attempts(run, 30_000)
        assert (first_one.status, first_one.error.type) == (pb.ATTEMPT_STATUS_FAILED, "Flaky"), told(run)
        assert second.scheduled_unix_ms >= first_one.finished_unix_ms + backoff_ms, told(run)
    close_ms = int(CHAOS["close"][0] * 1000)
    for run in runs["close"]:
        first_one, _ = attempts(run, close_ms)
        assert (first_one.status, first_one.error.type) == (
            pb.ATTEMPT_STATUS_TIMED_OUT,
            "StartToCloseTimeout",
        ), told(run)
        assert first_one.finished_unix_ms >= first_one.started_unix_ms + close_ms, told(run)
    lease_ms = int(CHAOS["silent"][0] * 1000)
    for run in runs["silent"]:
        first_one, _ = attempts(run, lease_ms)
        assert (first_one.status, first_one.error.type) == (
            pb.ATTEMPT_STATUS_TIMED_OUT,
            "HeartbeatTimeout",
        ), told(run)
        assert first_one.finished_unix_ms >= first_one.started_unix_ms + lease_ms, told(run)
    s2s_ms = int(CHAOS["unserved"][0] * 1000)
    for run in runs["unserved"]:
        (only,) = step(run, "work").attempts
        assert run.status == pb.RUN_STATUS_FAILED, told(run)
        assert (only.status, only.error.type) == (pb.ATTEMPT_STATUS_TIMED_OUT, "ScheduleToStartTimeout"), (
            told(run)
        )
        assert only.finished_unix_ms >= only.scheduled_unix_ms + s2s_ms, told(run)
