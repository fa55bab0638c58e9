"""The coordinator's metrics (docs/production.md, "Metrics"); served and exported by
``contracts.metrics.MetricsServer``. Labels are bounded: workflows, contracts, teams, statuses
and reasons, never run, attempt or agent ids."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.metrics import CallbackOptions, Meter, Observation

# Seconds: from a fast hop to a long task (step latency), and store commits (milliseconds).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
COMMIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
BUCKETS = {
    "accord.store.commit.duration": COMMIT_BUCKETS,
    "accord.step.duration": LATENCY_BUCKETS,
}


@dataclass
class Gauges:
    """Values read every few seconds on the event loop (by the coordinator process) and
    handed to the exporters' callbacks, which run on their own threads."""

    queue_depth: dict[tuple[str, ...], int] = field(default_factory=dict)  # (contract,) -> offers
    queue_oldest_s: dict[tuple[str, ...], float] = field(default_factory=dict)
    agents: dict[tuple[str, ...], int] = field(default_factory=dict)  # (team,) -> agents alive
    events_waiting: dict[tuple[str, ...], int] = field(default_factory=dict)  # (contract,) -> events
    event_lag_s: dict[tuple[str, ...], float] = field(default_factory=dict)


class CoordinatorMetrics:
    """The coordinator's instruments (names as OpenTelemetry has them; Prometheus shows dots as
    underscores and counters with ``_total``)."""

    def __init__(self, meter: Meter) -> None:
        self.runs_started = meter.create_counter(
            "accord.runs.started", unit="{run}", description="Runs started, by workflow."
        )
        self.runs_finished = meter.create_counter(
            "accord.runs.finished", unit="{run}", description="Runs finished, by workflow and status."
        )
        self.step_duration = meter.create_histogram(
            "accord.step.duration",
            unit="s",
            description="From an attempt's start (its schedule if it never started) to its end, by contract and status.",
        )
        self.step_failures = meter.create_counter(
            "accord.step.failures",
            unit="{attempt}",
            description="Attempts that failed, timed out or were cancelled, by contract and status.",
        )
        self.store_commit = meter.create_histogram(
            "accord.store.commit.duration", unit="s", description="One store transaction, by store."
        )
        self.refused = meter.create_counter(
            "accord.requests.refused",
            unit="{request}",
            description="Requests refused, by reason (overloaded, unauthenticated, permission_denied, invalid_argument, ...).",
        )
        self.retention_deleted = meter.create_counter(
            "accord.retention.deleted", unit="{row}", description="Rows retention deleted, by kind."
        )
        self.gauges = Gauges()
        meter.create_observable_gauge(
            "accord.queue.depth",
            callbacks=[self._observe(lambda: self.gauges.queue_depth, ("contract",))],
            unit="{task}",
            description="Tasks offered and not taken yet, by contract (name@major).",
        )
        meter.create_observable_gauge(
            "accord.queue.oldest.age",
            callbacks=[self._observe(lambda: self.gauges.queue_oldest_s, ("contract",))],
            unit="s",
            description="Age of the oldest task waiting to be taken, by contract.",
        )
        meter.create_observable_gauge(
            "accord.events.undelivered",
            callbacks=[self._observe(lambda: self.gauges.events_waiting, ("contract",))],
            unit="{event}",
            description="Events stored and not yet taken by the event bus, by contract.",
        )
        meter.create_observable_gauge(
            "accord.event.lag",
            callbacks=[self._observe(lambda: self.gauges.event_lag_s, ("contract",))],
            unit="s",
            description="Age of the oldest event the event bus has not taken yet, by contract.",
        )
        meter.create_observable_gauge(
            "accord.agents.connected",
            callbacks=[self._observe(lambda: self.gauges.agents, ("team",))],
            unit="{agent}",
            description="Agents alive (polling or seen lately), by team.",
        )

    @staticmethod
    def _observe(
        values: Callable[[], dict[tuple[str, ...], Any]], labels: tuple[str, ...]
    ) -> Callable[[CallbackOptions], Iterable[Observation]]:
        """A gauge's callback. A label set observed once and no longer there (a queue emptied,
        the event backlog caught up, a team's last agent gone) is observed as 0 from then on:
        left out, the exporters would go on showing its last value, and an alert on it would never
        clear. The label sets are contracts and teams, so what is remembered is bounded."""
        seen: set[tuple[str, ...]] = set()

        def callback(options: CallbackOptions) -> Iterable[Observation]:
            now = dict(values())
            seen.update(now)
            return [Observation(now.get(key, 0), dict(zip(labels, key, strict=True))) for key in sorted(seen)]

        return callback

    # ---------- what the coordinator tells it ----------

    def run_started(self, workflow: str) -> None:
        self.runs_started.add(1, {"workflow": workflow})

    def run_finished(self, workflow: str, status: str) -> None:
        self.runs_finished.add(1, {"workflow": workflow, "status": status})

    def attempt_ended(self, contract: str, status: str, seconds: float) -> None:
        self.step_duration.record(max(0.0, seconds), {"contract": contract, "status": status})
        if status != "succeeded":
            self.step_failures.add(1, {"contract": contract, "status": status})

    def committed(self, store: str, seconds: float) -> None:
        self.store_commit.record(seconds, {"store": store})

    def refused_request(self, reason: str) -> None:
        self.refused.add(1, {"reason": reason})

    def retention_pass(self, deleted: Mapping[str, int]) -> None:
        for kind, count in deleted.items():
            if count:
                self.retention_deleted.add(count, {"kind": kind})
