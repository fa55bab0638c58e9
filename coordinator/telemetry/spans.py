"""The span record the coordinator stores, whoever produced it.

The coordinator builds its own run/step/attempt spans from durable run state (a run's span can
outlive a coordinator restart, which an in-memory SDK span cannot), and converts spans received
over OTLP from agents into the same record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class SpanRecord:
    trace_id: str  # 32 hex chars
    span_id: str  # 16 hex chars
    parent_span_id: str  # "" for a root
    name: str
    start_ns: int
    end_ns: int
    team: str = ""  # producing team; "" for the coordinator itself
    service: str = "accord-coordinator"
    kind: str = "internal"  # internal | server | client | producer | consumer
    status: str = "unset"  # unset | ok | error
    status_message: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)  # {name, time_ns, attributes}
    links: list[dict[str, str]] = field(default_factory=list)  # {trace_id, span_id}
    run_id: str = ""  # the run the span belongs to, when known ("accord.run_id" attribute)
