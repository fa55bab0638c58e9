"""Sampling by the standard ``OTEL_TRACES_SAMPLER`` / ``OTEL_TRACES_SAMPLER_ARG`` variables.

A run's sampling decision is made once, when the run starts (or inherited from the caller's
sampled flag), and travels in the ``traceparent`` flags of every task; agents use parent-based
samplers, so every hop follows it and a run's trace is never half-sampled.

The ratio rule is the SDK's ``TraceIdRatioBased`` rule (lower 64 bits of the trace id against
``rate * 2**64``), so the coordinator and an SDK in another process agree for the same trace id.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from contracts.errors import AccordError

ENV_SAMPLER = "OTEL_TRACES_SAMPLER"
ENV_SAMPLER_ARG = "OTEL_TRACES_SAMPLER_ARG"

_KNOWN = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)
_TRACE_ID_LIMIT = (1 << 64) - 1


class SamplerConfigError(AccordError):
    exit_code = 2


@dataclass(frozen=True)
class SamplerConfig:
    parent_based: bool
    root: str  # "always_on" | "always_off" | "traceidratio"
    ratio: float = 1.0

    def decide(self, trace_id: str, parent_flags: int | None) -> bool:
        """Sampled or not, for a run with ``trace_id`` whose caller sent ``parent_flags``
        (``None`` when the run has no parent)."""
        if self.parent_based and parent_flags is not None:
            return bool(parent_flags & 0x01)
        if self.root == "always_on":
            return True
        if self.root == "always_off":
            return False
        bound = round(self.ratio * (_TRACE_ID_LIMIT + 1))
        return (int(trace_id, 16) & _TRACE_ID_LIMIT) < bound


def sampler_from_env(env: Mapping[str, str]) -> SamplerConfig:
    """The sampler the standard variables describe; raises ``SamplerConfigError`` with the fix
    for an unknown sampler name or a bad ratio. Default: ``parentbased_always_on``."""
    name = env.get(ENV_SAMPLER, "").strip().lower() or "parentbased_always_on"
    if name not in _KNOWN:
        raise SamplerConfigError(
            f"{ENV_SAMPLER}={name!r} is not a sampler Accord knows (misspelled?); "
            f"use one of: {', '.join(_KNOWN)}"
        )
    ratio = 1.0
    if name.endswith("traceidratio"):
        raw = env.get(ENV_SAMPLER_ARG, "").strip()
        if raw:
            try:
                ratio = float(raw)
            except ValueError:
                raise SamplerConfigError(
                    f"{ENV_SAMPLER_ARG}={raw!r} is not a number; give a ratio between 0 and 1"
                ) from None
            if not 0.0 <= ratio <= 1.0:
                raise SamplerConfigError(
                    f"{ENV_SAMPLER_ARG}={raw!r} is outside 0..1; give a ratio between 0 and 1"
                )
    parent_based = name.startswith("parentbased_")
    root = name.removeprefix("parentbased_")
    return SamplerConfig(parent_based=parent_based, root=root, ratio=ratio)


def decide_sampled(trace_id: str, parent_flags: int | None, env: Mapping[str, str]) -> bool:
    """Decide once, at a run's start, whether its trace is sampled.

    ``trace_id`` is the run's trace id (32 hex); ``parent_flags`` the caller's trace flags
    (``TraceParent.flags``) or ``None`` for a run without a parent (an event-triggered run is a
    new trace linked to the event, so it has none). Call ``sampler_from_env`` at start-up to
    report a bad configuration early; here a bad one falls back to the default
    (``parentbased_always_on``) rather than failing a run.
    """
    try:
        config = sampler_from_env(env)
    except SamplerConfigError:
        config = SamplerConfig(parent_based=True, root="always_on")
    return config.decide(trace_id, parent_flags)
