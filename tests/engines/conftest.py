"""Fixtures for the engine adapter tests: the fakes served on 127.0.0.1 port 0, a task factory,
an in-memory span exporter, and (in airflow_real.py) a real Airflow."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# The fakes live in tests/fakes; make ``tests.fakes`` importable however pytest was started.
_REPO = Path(__file__).resolve().parents[2]
if str(_REPO) not in sys.path:
    sys.path.insert(0, str(_REPO))

from opentelemetry import trace  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402

from team_agent.engines.base import TaskContext  # noqa: E402
from tests.fakes.airflow_fake import FakeAirflow  # noqa: E402
from tests.fakes.jenkins_fake import FakeJenkins  # noqa: E402
from tests.fakes.server import serve_in_thread  # noqa: E402

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def make_task(key: str | None = None, attempt: int = 1, **overrides: Any) -> TaskContext:
    """A TaskContext as the agent would build it; ``key`` is the step's idempotency key."""
    key = key or f"run-{uuid.uuid4().hex[:8]}/charge"
    fields: dict[str, Any] = {
        "task_id": f"task-{uuid.uuid4().hex[:8]}",
        "attempt_id": f"att-{uuid.uuid4().hex[:8]}",
        "attempt": attempt,
        "run_id": key.split("/")[0],
        "step_id": "charge",
        "workflow": "shipping/order-to-cash",
        "contract": "payments/charge-card",
        "contract_version": "1.2.0",
        "idempotency_key": key,
        "trace_context": {"traceparent": TRACEPARENT},
    }
    fields.update(overrides)
    return TaskContext(**fields)


@pytest.fixture
def fake_airflow() -> Iterator[tuple[FakeAirflow, str]]:
    fake = FakeAirflow()
    with serve_in_thread(fake.app) as url:
        yield fake, url


@pytest.fixture
def fake_airflow_v1() -> Iterator[tuple[FakeAirflow, str]]:
    fake = FakeAirflow(api_version=1)
    with serve_in_thread(fake.app) as url:
        yield fake, url


@pytest.fixture
def fake_jenkins() -> Iterator[tuple[FakeJenkins, str]]:
    fake = FakeJenkins()
    with serve_in_thread(fake.app) as url:
        yield fake, url


@pytest.fixture(scope="session")
def _span_exporter() -> InMemorySpanExporter:
    # Libraries never configure the SDK; tests are an entry point, so one is installed here
    # unless an earlier test already did.
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        trace.set_tracer_provider(TracerProvider())
        provider = trace.get_tracer_provider()
    exporter = InMemorySpanExporter()
    assert isinstance(provider, TracerProvider), "a non-SDK tracer provider is installed globally"
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


@pytest.fixture
def spans(_span_exporter: InMemorySpanExporter) -> Iterator[InMemorySpanExporter]:
    _span_exporter.clear()
    yield _span_exporter
    _span_exporter.clear()


from tests.engines.airflow_real import RealAirflow, real_airflow  # noqa: E402, F401  (a session fixture)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed test of the real Airflow reports what Airflow logged, its tasks' logs included:
    the Airflow home is a tmp dir that pytest deletes a few sessions later."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    airflow = getattr(item, "funcargs", {}).get("real_airflow")
    if report.failed and isinstance(airflow, RealAirflow):
        report.sections.append(("the real Airflow's logs", airflow.logs(tasks=6)))
