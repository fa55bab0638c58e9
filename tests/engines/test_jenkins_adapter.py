"""The ``jenkins`` adapter against the faithful fake (tests/fakes/jenkins_fake.py)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from team_agent.engines.base import EngineConfigError, EngineFailure, load_engine
from team_agent.engines.jenkins import (
    TASK_ID_PARAM,
    TRACEPARENT_PARAM,
    JenkinsConfig,
    JenkinsEngine,
    build_parameters,
    task_id_param,
)
from tests.engines.conftest import TRACEPARENT, make_task
from tests.fakes.jenkins_fake import FakeJenkins, FakeJob, Outcome
from tests.fakes.server import serve_in_thread
from tests.support.wait import wait_until

MakeEngine = Callable[..., JenkinsEngine]
Fake = tuple[FakeJenkins, str]
AUTH = ("accord", "11aa22bb")
PARAMS = {"ORDER_ID": "", "AMOUNT": "0", TASK_ID_PARAM: "", TRACEPARENT_PARAM: ""}


def echo(params: dict[str, str]) -> Outcome:
    """A build that archives accord-output.json computed from its parameters."""
    out = {"shipment": f"sh-{params['ORDER_ID']}", "amount": int(params["AMOUNT"])}
    return Outcome("SUCCESS", ["building...", "done"], {"accord-output.json": json.dumps(out).encode()})


@pytest.fixture
async def make_engine() -> AsyncIterator[Callable[..., JenkinsEngine]]:
    made: list[JenkinsEngine] = []

    def make(url: str, **config: Any) -> JenkinsEngine:
        base = {
            "base_url": url,
            "job": "ship",
            "username": "accord",
            "api_token": "11aa22bb",
            "output_artifact": "accord-output.json",
            "poll_interval": 0.02,
            "max_poll_interval": 0.1,
            "stop_timeout": 5,
            "timeout": 5,
        }
        base.update(config)
        engine = JenkinsEngine({k: v for k, v in base.items() if v is not None})
        made.append(engine)
        return engine

    yield make
    for engine in made:
        await engine.close()


async def run(engine: JenkinsEngine, input: Any, **task: Any) -> Any:
    return await engine.wait(await engine.submit(make_task(**task), input))


async def test_found_through_the_entry_point() -> None:
    assert load_engine("jenkins") is JenkinsEngine


async def test_api_token_build_returns_the_json_artifact(fake_jenkins: Fake, make_engine: MakeEngine) -> None:
    fake, url = fake_jenkins
    fake.add_job(FakeJob("ship", parameters=dict(PARAMS), behaviour=echo))
    engine = make_engine(url)
    handle = await engine.submit(make_task("run-1/ship"), {"ORDER_ID": "o-1", "AMOUNT": 7, "items": [1]})
    assert await engine.wait(handle) == {"shipment": "sh-o-1", "amount": 7}
    build = fake.build("ship", handle.state["build_number"])
    assert build.params[TASK_ID_PARAM] == task_id_param("run-1/ship")
    assert build.params[TRACEPARENT_PARAM] == TRACEPARENT
    assert not any(p.startswith("/crumbIssuer") for _, p, _ in fake.requests)  # tokens need no crumb
    assert handle.details["build_url"] == f"{url}/job/ship/{handle.state['build_number']}/"
    # delay=0sec skipped the 5 s quiet period
    assert time.time() - build.start < 3


async def test_password_auth_uses_a_crumb_and_the_session_cookie(
    fake_jenkins: Fake, make_engine: MakeEngine
) -> None:
    fake, url = fake_jenkins
    fake.add_job(FakeJob("ship", parameters=dict(PARAMS), behaviour=echo))
    engine = make_engine(url, api_token=None, password="pw")
    assert await run(engine, {"ORDER_ID": "p", "AMOUNT": 1}) == {"shipment": "sh-p", "amount": 1}
    assert ("GET", "/crumbIssuer/api/json", 200) in fake.requests
    assert ("POST", "/job/ship/buildWithParameters", 201) in fake.requests


async def test_a_crumb_without_its_session_is_refused(fake_jenkins: Fake) -> None:
    fake, url = fake_jenkins
    fake.add_job(FakeJob("ship", parameters=dict(PARAMS)))
    async with httpx.AsyncClient(base_url=url, auth=("accord", "pw")) as client:
        crumb = (await client.get("/crumbIssuer/api/json")).json()
        assert crumb["_class"] == "hudson.security.csrf.DefaultCrumbIssuer"
        client.cookies.clear()
        r = await client.post("/job/ship/buildWithParameters", headers={"Jenkins-Crumb": crumb["crumb"]})
        assert r.status_code == 403 and "No valid crumb" in r.text
    async with httpx.AsyncClient(base_url=url, auth=("accord", "wrong")) as client:
        r = await client.get("/queue/api/json")
        assert r.status_code == 401 and "Invalid password/token for user: accord" in r.text
    async with httpx.AsyncClient(base_url=url) as client:
        r = await client.get("/queue/api/json")
        assert r.status_code == 403 and r.headers["X-You-Are-Authenticated-As"] == "anonymous"


async def test_stale_crumb_is_refetched(fake_jenkins: Fake, make_engine: MakeEngine) -> None:
    fake, url = fake_jenkins
    fake.add_job(FakeJob("ship", parameters=dict(PARAMS), behaviour=echo))
    engine = make_engine(url, api_token=None, password="pw")
    await run(engine, {"ORDER_ID": "a", "AMOUNT": 1})
    fake.sessions.clear()  # Jenkins restarted: sessions and their crumbs are gone
    assert await run(engine, {"ORDER_ID": "b", "AMOUNT": 2}) == {"shipment": "sh-b", "amount": 2}
    assert sum(1 for _, p, s in fake.requests if p == "/crumbIssuer/api/json") == 2
    assert ("POST", "/job/ship/buildWithParameters", 403) in fake.requests


async def test_folder_jobs(fake_jenkins: Fake, make_engine: MakeEngine) -> None:
    fake, url = fake_jenkins
    fake.add_job(FakeJob("payments/release/ship", parameters=dict(PARAMS), behaviour=echo))
    engine = make_engine(url, job="payments/release/ship")
    handle = await engine.submit(make_task(), {"ORDER_ID": "f", "AMOUNT": 3})
    assert await engine.wait(handle) == {"shipment": "sh-f", "amount": 3}
    assert ("POST", "/job/payments/job/release/job/ship/buildWithParameters", 201) in fake.requests
    assert handle.details["build_url"].startswith(f"{url}/job/payments/job/release/job/ship/")


async def test_parameter_mapping(fake_jenkins: Fake, make_engine: MakeEngine) -> None:
    fake, url = fake_jenkins
    fake.add_job(FakeJob("ship", parameters={**PARAMS, "NOTE": "", "ITEMS": ""}, behaviour=echo))
    mapping = {
        "ORDER_ID": "${input.order.id}",
        "AMOUNT": "${input.amount}",
        "NOTE": "order ${input.order.id}!",
        "ITEMS": "${input.items}",
    }
    engine = make_engine(url, parameters=mapping)
    handle = await engine.submit(make_task(), {"order": {"id": "m-1"}, "amount": 9, "items": [{"sku": "a"}]})
    assert await engine.wait(handle) == {"shipment": "sh-m-1", "amount": 9}
    params = fake.build("ship", handle.state["build_number"]).params
    assert params["NOTE"] == "order m-1!" and params["ITEMS"] == '[{"sku":"a"}]'


def test_default_parameters_are_the_top_level_scalars() -> None:
    assert build_parameters(None, {"a": "x", "n": 2, "f": 1.5, "b": True, "z": None, "l": [1], "d": {}}) == {
        "a": "x",
        "n": "2",
        "f": "1.5",
        "b": "true",
        "z": "",
    }
    with pytest.raises(EngineFailure) as info:
        build_parameters({"X": "${input.missing}"}, {"a": 1})
    assert info.value.type == "ParameterMappingError" and not info.value.retryable


async def test_identical_inputs_of_two_tasks_are_never_merged(
    fake_jenkins: Fake, make_engine: MakeEngine
) -> None:
    fake, url = fake_jenkins
    fake.add_job(FakeJob("ship", parameters=dict(PARAMS), behaviour=echo, queue_wait=0.3))
    engine = make_engine(url)
    a = await engine.submit(make_task("run-a/ship"), {"ORDER_ID": "same", "AMOUNT": 1})
    b = await engine.submit(make_task("run-b/ship"), {"ORDER_ID": "same", "AMOUNT": 1})
    assert a.state["queue_id"] != b.state["queue_id"]
    assert fake.triggers(201) == 2 and fake.triggers(303) == 0
    await asyncio.gather(engine.wait(a), engine.wait(b))
    assert a.state["build_number"] != b.state["build_number"]


async def test_fake_merges_identical_queued_parameters_with_303(fake_jenkins: Fake) -> None:
    fake, url = fake_jenkins
    fake.add_job(FakeJob("ship", parameters=dict(PARAMS)))
    async with httpx.AsyncClient(base_url=url, auth=("accord", "11aa22bb")) as client:
        first = await client.post(
            "/job/ship/buildWithParameters", data={"ORDER_ID": "x", "UNKNOWN": "ignored"}
        )
        second = await client.post("/job/ship/buildWithParameters", data={"ORDER_ID": "x"})
        assert first.status_code == 201 and second.status_code == 303
        assert first.headers["location"] == second.headers["location"]
        assert first.headers["location"].startswith("http://")  # absolute
        item = (await client.get(first.headers["location"].split(url)[1] + "api/json")).json()
        assert item["_class"] == "hudson.model.Queue$WaitingItem"
        assert item["why"].startswith("In the quiet period. Expires in")  # no delay=0sec
        assert "UNKNOWN" not in item["params"] and "\nAMOUNT=0" in item["params"]


async def test_redelivered_task_finds_its_queue_item_and_then_its_build(
    fake_jenkins: Fake, make_engine: MakeEngine
) -> None:
    fake, url = fake_jenkins
    fake.add_job(FakeJob("ship", parameters=dict(PARAMS), behaviour=echo, queue_wait=0.3, duration=0.3))
    engine = make_engine(url)
    task = make_task("run-r/ship")
    first = await engine.submit(task, {"ORDER_ID": "r", "AMOUNT": 1})
    queued_again = await make_engine(url).submit(task, {"ORDER_ID": "r", "AMOUNT": 1})
    assert queued_again.state["queue_id"] == first.state["queue_id"] and queued_again.state["attached"]
    assert await engine.wait(first) == {"shipment": "sh-r", "amount": 1}
    built_again = await make_engine(url).submit(task, {"ORDER_ID": "r", "AMOUNT": 1})
    assert built_again.state["build_number"] == first.state["build_number"]
    assert await engine.wait(built_again) == {"shipment": "sh-r", "amount": 1}
    assert fake.triggers() == 1


async def test_a_retry_after_a_failed_build_starts_a_new_one(
    fake_jenkins: Fake, make_engine: MakeEngine
) -> None:
    fake, url = fake_jenkins
    job = fake.add_job(
        FakeJob("ship", parameters=dict(PARAMS), behaviour=lambda p: Outcome("FAILURE", ["no"]))
    )
    engine = make_engine(url)
    with pytest.raises(EngineFailure):
        await run(engine, {"ORDER_ID": "t", "AMOUNT": 1}, key="k/ship", attempt=1)
    job.behaviour = echo
    assert await run(engine, {"ORDER_ID": "t", "AMOUNT": 1}, key="k/ship", attempt=2) == {
        "shipment": "sh-t",
        "amount": 1,
    }
    assert fake.triggers() == 2
    assert fake.builds["ship"][-1].params[TASK_ID_PARAM] == task_id_param("k/ship", 2)


@pytest.mark.parametrize(("result", "kind"), [("FAILURE", "BuildFailed"), ("NOT_BUILT", "BuildNotBuilt")])
async def test_failed_build_reports_the_console_tail(
    fake_jenkins: Fake, make_engine: MakeEngine, result: str, kind: str
) -> None:
    fake, url = fake_jenkins
    lines = [f"step {i}" for i in range(100)] + ["ERROR: card service returned 502"]
    fake.add_job(FakeJob("ship", parameters=dict(PARAMS), behaviour=lambda p: Outcome(result, lines)))
    engine = make_engine(url, console_tail_lines=5)
    handle = await engine.submit(make_task(), {"ORDER_ID": "x"})
    with pytest.raises(EngineFailure) as info:
        await engine.wait(handle)
    failure = info.value
    assert failure.type == kind
    assert failure.details["result"] == result
    assert failure.details["build_url"] == handle.details["build_url"]
    tail = failure.details["console_tail"].splitlines()
    assert tail == [
        "step 97",
        "step 98",
        "step 99",
        "ERROR: card service returned 502",
        f"Finished: {result}",
    ]
    assert result in failure.message


async def test_unstable_is_configurable(fake_jenkins: Fake, make_engine: MakeEngine) -> None:
    fake, url = fake_jenkins
    out = {"accord-output.json": b'{"flaky": true}'}
    fake.add_job(
        FakeJob(
            "ship", parameters=dict(PARAMS), behaviour=lambda p: Outcome("UNSTABLE", ["tests flaky"], out)
        )
    )
    with pytest.raises(EngineFailure) as info:
        await run(make_engine(url), {})
    assert info.value.details["result"] == "UNSTABLE"
    assert await run(make_engine(url, unstable="success"), {}) == {"flaky": True}


async def test_missing_or_invalid_artifact(fake_jenkins: Fake, make_engine: MakeEngine) -> None:
    fake, url = fake_jenkins
    job = fake.add_job(
        FakeJob(
            "ship", parameters=dict(PARAMS), behaviour=lambda p: Outcome("SUCCESS", [], {"other.txt": b"x"})
        )
    )
    with pytest.raises(EngineFailure) as info:
        await run(make_engine(url), {})
    assert info.value.type == "OutputMissing" and "other.txt" in info.value.message
    job.behaviour = lambda p: Outcome("SUCCESS", [], {"accord-output.json": b"not json"})
    with pytest.raises(EngineFailure) as info:
        await run(make_engine(url), {})
    assert info.value.type == "OutputNotJson"


async def test_without_output_artifact_the_build_summary_is_returned(
    fake_jenkins: Fake, make_engine: MakeEngine
) -> None:
    fake, url = fake_jenkins
    fake.add_job(FakeJob("ship", parameters=dict(PARAMS)))
    out = await run(make_engine(url, output_artifact=None), {})
    assert out["result"] == "SUCCESS" and out["build_number"] == 1


async def test_cancel_while_queued_cancels_the_queue_item(
    fake_jenkins: Fake, make_engine: MakeEngine
) -> None:
    fake, url = fake_jenkins
    fake.add_job(FakeJob("ship", parameters=dict(PARAMS), queue_wait=30))
    engine = make_engine(url)
    handle = await engine.submit(make_task(), {"ORDER_ID": "c"})
    waiter = asyncio.create_task(engine.wait(handle))
    await asyncio.sleep(0.1)  # wait() is under way (either way, the item is still queued: 30 s)
    await engine.cancel(handle)
    assert ("POST", "/queue/cancelItem", 204) in fake.requests
    with pytest.raises(EngineFailure) as info:
        await asyncio.wait_for(waiter, 30)
    assert info.value.type == "BuildCancelled"
    assert fake.queue[handle.state["queue_id"]].cancelled is True
    assert fake.builds["ship"] == []


async def test_cancel_while_running_stops_the_build_and_waits_for_it(
    fake_jenkins: Fake, make_engine: MakeEngine
) -> None:
    fake, url = fake_jenkins
    fake.add_job(FakeJob("ship", parameters=dict(PARAMS), duration=30, stop_delay=0.4))
    engine = make_engine(url)
    handle = await engine.submit(make_task(), {"ORDER_ID": "s"})
    waiter = asyncio.create_task(engine.wait(handle))
    await wait_until(lambda: fake.builds["ship"], "the build never started")
    await asyncio.sleep(0.1)  # wait() is under way (either way, the build runs for 30 s)
    started = time.monotonic()
    await engine.cancel(handle)
    assert time.monotonic() - started >= 0.3  # the stop is asynchronous: cancel waited for it
    assert fake.builds["ship"][0].result == "ABORTED"
    assert ("POST", "/job/ship/1/stop", 302) in fake.requests
    with pytest.raises(EngineFailure) as info:
        await asyncio.wait_for(waiter, 30)
    assert info.value.type == "BuildAborted"


async def test_an_expired_queue_item_is_found_through_the_builds_queue_id(make_engine: MakeEngine) -> None:
    fake = FakeJenkins(left_item_ttl=0.05)
    fake.add_job(FakeJob("ship", parameters=dict(PARAMS), behaviour=echo, duration=0.05))
    with serve_in_thread(fake.app) as url:
        engine = make_engine(url)
        handle = await engine.submit(make_task(), {"ORDER_ID": "e", "AMOUNT": 2})
        # The item leaves the queue and expires before the engine looks.
        async with httpx.AsyncClient(base_url=url, auth=("accord", "11aa22bb")) as client:
            item = f"/queue/item/{handle.state['queue_id']}/api/json"

            async def expired() -> bool:
                return (await client.get(item)).status_code == 404

            await wait_until(expired, "the queue item never expired")
        assert await engine.wait(handle) == {"shipment": "sh-e", "amount": 2}


async def test_location_from_a_misconfigured_root_url_still_names_the_item(make_engine: MakeEngine) -> None:
    fake = FakeJenkins(root_url="http://jenkins.internal.invalid:8080/ci/")
    fake.add_job(FakeJob("ship", parameters=dict(PARAMS), behaviour=echo))
    with serve_in_thread(fake.app) as url:
        assert await run(make_engine(url), {"ORDER_ID": "l", "AMOUNT": 0}) == {
            "shipment": "sh-l",
            "amount": 0,
        }


async def test_trigger_errors(fake_jenkins: Fake, make_engine: MakeEngine) -> None:
    fake, url = fake_jenkins
    fake.add_job(FakeJob("plain", parameters=None))
    fake.add_job(FakeJob("off", parameters=dict(PARAMS), disabled=True))
    cases = [("plain", "JobNotParameterized"), ("off", "JobNotBuildable"), ("nope", "JobNotFound")]
    for job, kind in cases:
        with pytest.raises(EngineFailure) as info:
            await make_engine(url, job=job).submit(make_task(), {})
        assert info.value.type == kind and not info.value.retryable, job
    with pytest.raises(EngineFailure) as info:
        await make_engine(url, job="off", api_token="bad").submit(make_task(), {})
    assert (
        info.value.type == "EngineAuthError" and not info.value.retryable and "bad" not in info.value.message
    )


def test_config_errors_list_every_problem() -> None:
    with pytest.raises(EngineConfigError) as info:
        JenkinsEngine(
            {
                "base_url": "jenkins:8080",
                "job": "a//b",
                "api_token": "t",
                "password": "p",
                "parameters": {"ACCORD_TASK_ID": "x", "Y": "${steps.a}"},
                "unstable": "maybe",
                "jobb": 1,
            }
        )
    fields = {f for f, _ in info.value.problems}
    assert {
        "base_url",
        "job",
        "username",
        "api_token",
        "parameters.ACCORD_TASK_ID",
        "parameters.Y",
        "unstable",
        "jobb",
    } <= fields


def test_job_paths_encode_each_folder_once() -> None:
    def path(job: str) -> str:
        return JenkinsConfig.from_mapping(
            {"base_url": "http://j", "job": job, "username": "u", "api_token": "t"}
        ).job_path

    assert path("a/b") == "/job/a/job/b"
    assert path("/team x/deploy/") == "/job/team%20x/job/deploy"
    assert path("repo/feature%2Fx") == "/job/repo/job/feature%2Fx"  # a multibranch branch, not re-encoded


async def test_the_build_and_its_pipeline_stages_become_spans_under_the_engines_span(
    fake_jenkins: Fake, make_engine: MakeEngine, spans: InMemorySpanExporter
) -> None:
    fake, url = fake_jenkins
    fake.add_job(
        FakeJob(
            "ship",
            parameters=dict(PARAMS),
            stages=["Checkout", "Build", "Deploy"],
            behaviour=lambda p: Outcome(
                "FAILURE", ["compiling", "ERROR: tests failed"], failed_stage="Build"
            ),
        )
    )
    engine = make_engine(url)
    with trace.get_tracer("test").start_as_current_span("engine.jenkins"), pytest.raises(EngineFailure):
        await run(engine, {"ORDER_ID": "s-1", "AMOUNT": 1})
    finished = {s.name: s for s in spans.get_finished_spans()}
    engine_span = finished["engine.jenkins"]
    (build_name,) = [n for n in finished if n.startswith("jenkins.build #")]
    build = finished[build_name]
    assert build.parent is not None and build.parent.span_id == engine_span.context.span_id
    assert build.status.status_code == trace.StatusCode.ERROR
    number = build_name.split("#")[1]
    assert dict(build.attributes or {})["jenkins.build.url"] == f"{url}/job/ship/{number}/"
    stages = {n.split(" ", 1)[1]: sp for n, sp in finished.items() if n.startswith("jenkins.stage ")}
    assert set(stages) == {"Checkout", "Build"}  # Deploy never ran
    for span in stages.values():
        assert span.parent is not None and span.parent.span_id == build.context.span_id
        assert build.start_time <= span.start_time <= span.end_time <= build.end_time
    checkout, failed = stages["Checkout"], stages["Build"]
    assert dict(failed.attributes or {})["jenkins.stage.status"] == "FAILED"
    assert failed.status.status_code == trace.StatusCode.ERROR
    assert checkout.status.status_code != trace.StatusCode.ERROR
    node = dict(failed.attributes or {})["jenkins.stage.id"]
    assert dict(failed.attributes or {})["jenkins.stage.log_url"] == (
        f"{url}/job/ship/{number}/execution/node/{node}/wfapi/log"
    )
    # The fake serves one stage's describe as the Stage View does.
    async with httpx.AsyncClient() as client:
        one = await client.get(f"{url}/job/ship/{number}/execution/node/{node}/wfapi/describe", auth=AUTH)
    assert one.status_code == 200 and one.json()["name"] == "Build"


async def test_a_freestyle_build_is_one_span_without_stages(
    fake_jenkins: Fake, make_engine: MakeEngine, spans: InMemorySpanExporter
) -> None:
    fake, url = fake_jenkins
    fake.add_job(FakeJob("ship", parameters=dict(PARAMS), behaviour=echo))  # no stages: wfapi is 404
    engine = make_engine(url)
    with trace.get_tracer("test").start_as_current_span("engine.jenkins"):
        await run(engine, {"ORDER_ID": "s-2", "AMOUNT": 2})
    names = [s.name for s in spans.get_finished_spans()]
    assert sum(1 for n in names if n.startswith("jenkins.build #")) == 1
    assert not any(n.startswith("jenkins.stage ") for n in names)
