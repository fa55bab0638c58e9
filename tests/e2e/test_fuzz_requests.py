"""Fuzzing every RPC's request message against the real coordinator (issue 15, "Tests that must
exist"): whatever a team sends, the answer is never INTERNAL or UNKNOWN and the coordinator's log
holds no traceback.

Requests are built by hypothesis from each method's message descriptor: strings mix random text
with values known to have broken an edge (NaN in JSON, deep nesting, 5,000-digit integers,
majors of 2^31, huge page tokens), numbers span their whole wire range (doubles with NaN and
infinities). Meanwhile another team's chain runs again and again, and its median latency must
stay within 1.5x of its median on the quiet coordinator, measured in the same test
(``tests/support/chain_probe.py``). Short in ``make test``, long in ``make soak``.
"""

from __future__ import annotations

import asyncio
import json
import string
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any, TypeVar
from urllib.parse import quote

import grpc
import httpx
import hypothesis.strategies as st
import pytest
from google.protobuf.descriptor import FieldDescriptor
from hypothesis import HealthCheck, given, settings
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from contracts._wire.accord.agent.v1 import agent_gateway_service_pb2 as agent_pb
from contracts._wire.accord.agent.v2 import agent_stream_service_pb2 as stream_pb
from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
from tests.support.chain_probe import ChainProbe
from tests.support.coordinator import CoordinatorProcess
from tests.support.scenario import contract
from tests.support.soak import LATENCY_RATIOS, sized

HOSTILE_STRINGS = [
    "",
    "payments",
    "payments/charge",
    "payments/charge@1",
    "payments/charge@2147483648",
    "payments/charge@^99999999999999999999",
    "payments/flow",
    "1e23",
    "9" * 30,
    "-1",
    '{"a": NaN}',
    '{"a": Infinity}',
    '{"a": 1e400}',
    '{"a": "\\ud800"}',
    '{"a": ' + "9" * 5000 + "}",
    "[" * 1000 + "]" * 1000,
    "{}",
    "[]",
    "null",
    "a" * 70_000,
    "\u0000",
    "\ud7ff\ue000",
    "2026-13-45",
    "99999-01-01",
    "contract: payments/charge\nversion: 2147483648.0.0\n",
    "a: &a [*a]",
]
# Calls that change or revoke tokens would end the fuzzing team's session: they go with a fresh
# token of a team of their own each time (``TOKEN_CALLS``), every round.
TOKEN_CALLS = {"RotateTeamToken", "RevokeTeamToken", "RotateAdminToken"}
BAD = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}


def _strings() -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(HOSTILE_STRINGS), st.text(max_size=50))


def _value(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind == FieldDescriptor.TYPE_STRING:
        return _strings()
    if kind == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=20)
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return st.floats(
            allow_nan=True, allow_infinity=True, width=64 if kind == FieldDescriptor.TYPE_DOUBLE else 32
        )
    if kind == FieldDescriptor.TYPE_ENUM:
        return st.sampled_from([v.number for v in field.enum_type.values])
    if kind in (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SFIXED32):
        return st.one_of(st.integers(-(2**31), 2**31 - 1), st.sampled_from([0, 1, -1, 2**31 - 1, -(2**31)]))
    if kind in (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32):
        return st.integers(0, 2**32 - 1)
    if kind in (FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64):
        return st.integers(0, 2**64 - 1)
    if kind == FieldDescriptor.TYPE_MESSAGE:
        return _message(field.message_type, depth + 1)
    return st.one_of(st.integers(-(2**63), 2**63 - 1), st.sampled_from([0, 1, -1, 2**63 - 1, -(2**63)]))


def _message(descriptor: Any, depth: int = 0) -> st.SearchStrategy[dict[str, Any]]:
    if depth > 3:
        return st.just({})
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for field in descriptor.fields:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            key, value = field.message_type.fields_by_name["key"], field.message_type.fields_by_name["value"]
            fields[field.name] = st.dictionaries(_value(key, depth), _value(value, depth), max_size=3)
        elif field.is_repeated if hasattr(field, "is_repeated") else field.label == field.LABEL_REPEATED:
            fields[field.name] = st.lists(_value(field, depth), max_size=3)
        else:
            fields[field.name] = _value(field, depth)
    return st.fixed_dictionaries({}, optional=fields)


def _build(descriptor: Any, values: dict[str, Any]) -> Any:
    from google.protobuf import message_factory

    message = message_factory.GetMessageClass(descriptor)()
    _fill(message, values)
    return message


def _fill(message: Any, values: dict[str, Any]) -> None:
    for name, value in values.items():
        field = message.DESCRIPTOR.fields_by_name[name]
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            target = getattr(message, name)
            for key, item in value.items():
                if isinstance(item, dict):
                    _fill(target[key], item)
                else:
                    target[key] = item
        elif isinstance(value, list):
            target = getattr(message, name)
            for item in value:
                if isinstance(item, dict):
                    _fill(target.add(), item)
                else:
                    target.append(item)
        elif isinstance(value, dict):
            _fill(getattr(message, name), value)
        else:
            setattr(message, name, value)


UNARY, SERVER_STREAM, BIDI = "unary", "server stream", "bidi"


def _methods() -> list[tuple[str, Any, str]]:
    """(path, request message, kind) of every RPC the coordinator serves: its two services, the
    agents' v2 stream and the OTLP trace receiver on the same port."""
    found = []
    for module, service in (
        (pb, "CoordinatorService"),
        (agent_pb, "AgentGatewayService"),
        (stream_pb, "AgentStreamService"),
        (trace_service_pb2, "TraceService"),
    ):
        described = module.DESCRIPTOR.services_by_name[service]
        for method in described.methods:
            if method.client_streaming:
                kind = BIDI
            else:
                kind = SERVER_STREAM if method.server_streaming else UNARY
            found.append((f"/{described.full_name}/{method.name}", method.input_type, kind))
    return found


METHODS = _methods()
# Sent every round whatever hypothesis draws from METHODS (each is one method of many there).
EVERY_ROUND = [
    m
    for m in METHODS
    if m[0].rsplit("/", 1)[1] in TOKEN_CALLS
    or m[0].endswith(("/AgentStreamService/Connect", "/TraceService/Export"))
]
T = TypeVar("T")


def _interleaved(
    probe: ChainProbe, rounds: int, draw: Callable[[], list[T]], send: Callable[[T], None]
) -> None:
    """``rounds`` times: draw a batch of requests (hypothesis), time three runs of another team's
    chain on the quiet coordinator, then send the batch while the chain's runs go on one after
    another; at the end the medians must be within 1.5x. The quiet runs are spread over the test,
    so a machine whose load changes meanwhile (2 cores shared with other tests) moves both sides
    alike; the requests are drawn before, not while, the chain is timed, so what is measured is
    the coordinator serving them, not hypothesis's CPU."""
    before: list[float] = []
    for _ in range(rounds):
        batch = draw()
        before += probe.baseline(3)
        probe.start_interleaving()
        try:
            for request in batch:
                began = time.perf_counter()
                send(request)
                # Pacing, not waiting for an event: a request costs the coordinator's loop a few
                # ms (none more than ~40 ms), so sent back to back they are a load test that holds
                # the whole loop (measured: the chain 1.3-1.9x slower, from load alone). Idling as
                # long as the request took (at most 50 ms: long polls and watches wait, they do
                # not work) keeps the fuzzer to half the loop; a request that stalls the loop
                # still shows in the chain's latency.
                time.sleep(min(time.perf_counter() - began, 0.05))
        finally:
            probe.stop_interleaving()
    probe.assert_within(before, 1.5)


@pytest.fixture(scope="module")
def fuzzed(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[CoordinatorProcess, str, ChainProbe]]:
    workdir = tmp_path_factory.mktemp("fuzz")
    coordinator = CoordinatorProcess.start(workdir / "home", "--max-payload", "64KiB")
    probe = ChainProbe(coordinator, workdir / "crm")

    async def setup() -> str:
        token = await coordinator.create_team("payments")
        await coordinator.create_team("sandbox")  # the token calls' own team
        await coordinator.register_contract(token, contract("payments/charge"))
        await probe.prepare()
        return token

    try:
        token = asyncio.run(setup())
        yield coordinator, token, probe.start()
    finally:
        probe.close()
        coordinator.kill9()


@pytest.mark.xdist_group(LATENCY_RATIOS)
@sized("examples,rounds", short=(150, 5), soak=(5000, 20))
def test_no_request_gets_internal_or_a_traceback(
    fuzzed: tuple[CoordinatorProcess, str, ChainProbe], examples: int, rounds: int
) -> None:
    """... and another team's chain, run during the fuzzing, keeps within 1.5x its latency."""
    coordinator, token, probe = fuzzed
    metadata = (("authorization", f"Bearer {token}"),)
    channel = grpc.insecure_channel(coordinator.address)
    answers: Counter[str] = Counter()

    @settings(
        max_examples=max(examples // rounds, 1),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        database=None,
    )
    @given(data=st.data())
    def one(data: st.DataObject) -> None:
        method = data.draw(st.sampled_from([m for m in METHODS if m not in EVERY_ROUND]), label="method")
        batch.append(_drawn(data, method))

    @settings(max_examples=1, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(data=st.data())
    def every_round(data: st.DataObject) -> None:
        batch.extend(_drawn(data, method) for method in EVERY_ROUND)

    batch: list[tuple[str, Any, str]] = []

    def draw() -> list[tuple[str, Any, str]]:
        batch.clear()
        one()
        every_round()
        return list(batch)

    def send(drawn: tuple[str, Any, str]) -> None:
        path, request, kind = drawn
        method = path.rsplit("/", 1)[1]
        # A token call goes with a fresh token of its own team: a rotation or revocation ends
        # only that token (the admin's token is never sent: rotating it would end the test's).
        headers = (("authorization", f"Bearer {sandbox_token()}"),) if method in TOKEN_CALLS else metadata
        try:
            if kind == BIDI:  # the messages, then the agent's side closes; read what comes back
                messages = list(request)
                serialize = type(messages[0]).SerializeToString
                call = channel.stream_stream(path, request_serializer=serialize, response_deserializer=bytes)
                for _ in call(iter(messages), metadata=headers, timeout=2):
                    pass
            elif kind == SERVER_STREAM:
                serialize = type(request).SerializeToString
                call = channel.unary_stream(path, request_serializer=serialize, response_deserializer=bytes)
                for _ in call(request, metadata=headers, timeout=2):
                    break
            else:
                serialize = type(request).SerializeToString
                call = channel.unary_unary(path, request_serializer=serialize, response_deserializer=bytes)
                call(request, metadata=headers, timeout=2)
            answers["OK"] += 1
            sent[path] += 1
        except grpc.RpcError as exc:
            answers[exc.code().name] += 1
            sent[path] += 1
            assert exc.code() not in BAD, (path, request, exc.code(), exc.details())

    tokens_made = [0]

    def sandbox_token() -> str:
        tokens_made[0] += 1
        made = channel.unary_unary(
            "/accord.coordinator.v1.CoordinatorService/CreateTeamToken",
            request_serializer=pb.CreateTeamTokenRequest.SerializeToString,
            response_deserializer=pb.CreateTeamTokenResponse.FromString,
        )(
            pb.CreateTeamTokenRequest(team="sandbox", name=f"fuzz-{tokens_made[0]}"),
            metadata=(("authorization", f"Bearer {coordinator.admin_token}"),),
            timeout=30,
        )
        return str(made.token)

    sent: Counter[str] = Counter()
    try:
        _interleaved(probe, rounds, draw, send)
    finally:
        channel.close()
    log = coordinator.log()
    assert "Traceback" not in log, _around_traceback(log)
    # The fuzzing reached past the edge: some calls were answered, some refused as invalid; the
    # agents' stream, the trace receiver and the token calls were sent every round.
    assert answers["OK"] and answers["INVALID_ARGUMENT"], answers
    assert all(sent[path] >= rounds for path, _, _ in EVERY_ROUND), sent


def _drawn(data: st.DataObject, method: tuple[str, Any, str]) -> tuple[str, Any, str]:
    """A request for ``method`` drawn by hypothesis (for a bidirectional stream: 1 to 3 messages)."""
    path, input_type, kind = method
    if kind == BIDI:
        values = data.draw(st.lists(_message(input_type), min_size=1, max_size=3), label=path)
        return path, [_build(input_type, v) for v in values], kind
    return path, _build(input_type, data.draw(_message(input_type), label=path)), kind


UI_PATHS = [
    "/api/v1/runs",
    "/api/v1/runs/{x}",
    "/api/v1/runs/{x}/trace",
    "/api/v1/contracts",
    "/api/v1/contracts/diff",
    "/api/v1/contracts/{x}/{x}",
    "/api/v1/teams/graph",
    "/api/v1/audit",
    "/api/v1/session",
    "/api/v1/workflows",
    "/api/v1/workflows/{x}/{x}",
    "/api/v1/agents",
    "/api/v1/notices",
    "/api/v1/autonomy",
    "/api/v1/events/{x}",
]
# Sent with a body; DELETE /api/v1/session with a drawn CSRF header (the session's own sign-out,
# with the right header, comes at the end).
UI_POSTS = [
    "/api/v1/runs/{x}/cancel",
    "/api/v1/runs/{x}/rerun",
    "/api/v1/runs/{x}/steps/{x}/answer",
    "/api/v1/session",
]
UI_PARAMS = [
    "after",
    "before",
    "limit",
    "cursor",
    "q",
    "status",
    "team",
    "workflow",
    "old",
    "new",
    "since",
    "version",
]
UI_FLOW = """
workflow: payments/flow
input: {type: object}
steps:
  charge:
    contract: payments/charge@^1
    input: {order_id: "x"}
"""


@pytest.fixture(scope="module")
def fuzzed_ui(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[CoordinatorProcess, str, str, ChainProbe, str]]:
    """... and the id of one of the team's runs (waiting for an agent), for the run routes."""
    workdir = tmp_path_factory.mktemp("fuzz-ui")
    coordinator = CoordinatorProcess.start(workdir / "home", "--ui", "127.0.0.1:0")
    probe = ChainProbe(coordinator, workdir / "crm")

    async def setup() -> tuple[str, str]:
        token = await coordinator.create_team("payments")
        await coordinator.register_contract(token, contract("payments/charge"))
        await coordinator.register_workflow(token, UI_FLOW)
        async with coordinator.client(token) as client:
            run = await client.coordinator.StartRun(
                pb.StartRunRequest(workflow="payments/flow", input_json="{}")
            )
        await probe.prepare()
        return token, run.run.run_id

    try:
        token, run_id = asyncio.run(setup())
        probe.start()
        state = json.loads((coordinator.home / "coordinator.json").read_text())
        yield coordinator, token, f"http://{state['ui']}", probe, run_id
    finally:
        probe.close()
        coordinator.kill9()


@pytest.mark.xdist_group(LATENCY_RATIOS)
@sized("examples,rounds", short=(100, 5), soak=(3000, 20))
def test_the_ui_api_never_answers_500(
    fuzzed_ui: tuple[CoordinatorProcess, str, str, ChainProbe, str], examples: int, rounds: int
) -> None:
    """... every route of the UI's JSON API (GET, POST with a drawn body, the session's DELETE),
    and another team's chain, run during the fuzzing, keeps within 1.5x its latency."""
    coordinator, token, url, probe, run_id = fuzzed_ui
    ui_strings = st.one_of(
        st.sampled_from([s for s in HOSTILE_STRINGS if len(s) < 6000]), st.text(max_size=30)
    )
    segments = st.one_of(ui_strings, st.sampled_from([run_id, "charge", "payments", "flow", "evt-1"]))
    json_values = st.one_of(ui_strings, st.booleans(), st.integers(), st.floats(), st.none())
    bodies = st.one_of(
        st.none(),
        ui_strings,
        st.fixed_dictionaries(
            {},
            optional={
                k: json_values for k in ("token", "reason", "request_id", "approve", "comment", "input")
            },
        ).map(json.dumps),
    )
    csrf_values = st.text(alphabet=string.ascii_letters + string.digits + "-_", max_size=40)
    with httpx.Client(base_url=url, timeout=30) as http:
        signed = http.post("/api/v1/session", json={"token": token}, headers={"Origin": url})
        assert signed.status_code == 200, signed.text
        csrf = signed.json()["csrf"]

        @settings(
            max_examples=max(examples // rounds, 1),
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        @given(
            path=st.sampled_from(UI_PATHS),
            segment=segments,
            params=st.dictionaries(st.sampled_from(UI_PARAMS), ui_strings, max_size=4),
            post=st.sampled_from(UI_POSTS),
            body=bodies,
            wrong_csrf=csrf_values,
        )
        def one(
            path: str, segment: str, params: dict[str, str], post: str, body: str | None, wrong_csrf: str
        ) -> None:
            batch.append((path, segment, params, post, body, wrong_csrf))

        batch: list[tuple[str, str, dict[str, str], str, str | None, str]] = []
        posted: Counter[str] = Counter()

        def draw() -> list[tuple[str, str, dict[str, str], str, str | None, str]]:
            batch.clear()
            one()
            return list(batch)

        def send(drawn: tuple[str, str, dict[str, str], str, str | None, str]) -> None:
            path, segment, params, post, body, wrong_csrf = drawn
            segment = quote(segment, safe="") or "x"
            target = path.replace("{x}", segment)
            answer = http.get(target, params=params)
            assert answer.status_code < 500, (target, params, answer.status_code, answer.text[:300])
            if body is not None:
                target = post.replace("{x}", segment)
                answer = http.post(
                    target,
                    content=body.encode("utf-8", "surrogatepass"),
                    headers={"X-Accord-CSRF": csrf, "Content-Type": "application/json", "Origin": url},
                )
                posted[post] += 1
                assert answer.status_code < 500, (target, body[:80], answer.status_code, answer.text[:300])
                # Signing out needs this session's CSRF header: a drawn one is refused.
                answer = http.request(
                    "DELETE",
                    "/api/v1/session",
                    content=body.encode("utf-8", "surrogatepass"),
                    headers={"X-Accord-CSRF": wrong_csrf},
                )
                assert answer.status_code == 403, (wrong_csrf, answer.status_code, answer.text[:300])

        _interleaved(probe, rounds, draw, send)
        assert http.get("/api/v1/runs").status_code == 200  # still signed in
        out = http.request("DELETE", "/api/v1/session", headers={"X-Accord-CSRF": csrf})
        assert out.status_code == 200 and http.get("/api/v1/runs").status_code == 401, out.text
        assert http.request("DELETE", "/api/v1/session").status_code == 401
    assert posted, "no body was drawn"
    log = coordinator.log()
    assert "Traceback" not in log, _around_traceback(log)


def _around_traceback(log: str) -> str:
    """The coordinator's log around its first traceback: the line saying what raised, and the
    traceback itself (the log's tail alone hid them once)."""
    at = log.find("Traceback")
    return log[max(0, at - 1500) : at + 4000]
