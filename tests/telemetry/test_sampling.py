"""Sampling: decided once per run from the standard variables, inherited from the caller."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace.sampling import Decision, TraceIdRatioBased

from coordinator.telemetry.propagation import new_trace_id
from coordinator.telemetry.sampling import SamplerConfigError, decide_sampled, sampler_from_env

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def test_default_is_parent_based_always_on() -> None:
    assert decide_sampled(TRACE, None, {})
    assert decide_sampled(TRACE, 0x01, {})
    assert not decide_sampled(TRACE, 0x00, {})


def test_always_off_and_on_ignore_the_parent() -> None:
    assert not decide_sampled(TRACE, 0x01, {"OTEL_TRACES_SAMPLER": "always_off"})
    assert decide_sampled(TRACE, 0x00, {"OTEL_TRACES_SAMPLER": "always_on"})


def test_parent_based_always_off_samples_only_when_the_caller_did() -> None:
    env = {"OTEL_TRACES_SAMPLER": "parentbased_always_off"}
    assert not decide_sampled(TRACE, None, env)
    assert decide_sampled(TRACE, 0x01, env)


@pytest.mark.parametrize("ratio", ["0", "0.25", "0.5", "1"])
def test_ratio_agrees_with_the_sdk_sampler(ratio: str) -> None:
    env = {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": ratio}
    sdk = TraceIdRatioBased(float(ratio))
    for _ in range(300):
        trace_id = new_trace_id()
        expected = sdk.should_sample(None, int(trace_id, 16), "run").decision == Decision.RECORD_AND_SAMPLE
        assert decide_sampled(trace_id, 0x01, env) == expected  # not parent based: flag ignored


def test_parent_based_ratio_follows_the_parent_and_samples_roots_by_ratio() -> None:
    env = {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0"}
    assert decide_sampled(TRACE, 0x01, env)
    assert not decide_sampled(TRACE, None, env)
    sampled = sum(
        decide_sampled(new_trace_id(), None, {**env, "OTEL_TRACES_SAMPLER_ARG": "0.5"}) for _ in range(2000)
    )
    assert 800 < sampled < 1200


def test_bad_configuration_is_reported_with_the_fix_and_does_not_fail_runs() -> None:
    with pytest.raises(SamplerConfigError, match="misspelled"):
        sampler_from_env({"OTEL_TRACES_SAMPLER": "allways_on"})
    with pytest.raises(SamplerConfigError, match="between 0 and 1"):
        sampler_from_env({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2"})
    assert decide_sampled(TRACE, None, {"OTEL_TRACES_SAMPLER": "allways_on"})
