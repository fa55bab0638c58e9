"""The agent's metrics (docs/production.md, "Metrics"): served for Prometheus on
``accord agent start --metrics HOST:PORT`` and exported by OTLP by the standard ``OTEL_*``
variables (``contracts.metrics.MetricsServer``). Labels are bounded: contracts and outcomes,
never run or attempt ids."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from opentelemetry.metrics import CallbackOptions, Meter, Observation

TASK_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14400)
BUCKETS = {"accord.agent.task.duration": TASK_BUCKETS}


class AgentMetrics:
    def __init__(
        self,
        meter: Meter,
        running: Callable[[], dict[str, int]],
        undelivered: Callable[[], int],
    ) -> None:
        """``running``: contract ("team/name@major") -> tasks running now; ``undelivered``: results
        not yet accepted by the coordinator (in the outbox). Both are read on the exporters'
        threads: they must only read."""
        self.tasks = meter.create_counter(
            "accord.agent.tasks",
            unit="{task}",
            description="Tasks this agent ended, by contract and outcome (succeeded, failed, released).",
        )
        self.duration = meter.create_histogram(
            "accord.agent.task.duration",
            unit="s",
            description="From taking a task to its result, by contract and outcome.",
        )

        def observe_running(options: CallbackOptions) -> Iterable[Observation]:
            return [Observation(n, {"contract": key}) for key, n in dict(running()).items()]

        def observe_undelivered(options: CallbackOptions) -> Iterable[Observation]:
            return [Observation(undelivered())]

        meter.create_observable_gauge(
            "accord.agent.tasks.running",
            callbacks=[observe_running],
            unit="{task}",
            description="Tasks running now, by contract.",
        )
        meter.create_observable_gauge(
            "accord.agent.results.undelivered",
            callbacks=[observe_undelivered],
            unit="{result}",
            description="Results waiting to reach the coordinator (kept in the outbox until it takes them).",
        )

    def task_ended(self, contract: str, outcome: str, seconds: float) -> None:
        labels = {"contract": contract, "outcome": outcome}
        self.tasks.add(1, labels)
        self.duration.record(max(0.0, seconds), labels)
