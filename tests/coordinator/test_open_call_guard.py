"""OpenCallGuard: what an open call awaits ends once the call's token is refused (revoked, or
expired with no change of the tokens at all), and the check made before answering sees a
refusal the guard has not noticed yet. Over a real TokenAuthority; the calls themselves are in
tests/e2e/test_open_calls_refused.py."""

from __future__ import annotations

import asyncio

import pytest

from contracts.errors import UnauthenticatedError
from coordinator.api.auth import OpenCallGuard
from coordinator.tokens import TokenAuthority, hash_token


def _authority(now: list[float], expires_ms: int = 0) -> TokenAuthority:
    authority = TokenAuthority(clock=lambda: now[0])
    authority.set_team_token("payments", hash_token("the-token"), name="ci", expires_ms=expires_ms)
    return authority


async def test_a_revocation_cancels_the_step_and_says_why() -> None:
    authority = _authority([1000.0])
    step_cancelled = asyncio.Event()

    async def step() -> str:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            step_cancelled.set()
            raise
        return "never"

    async with OpenCallGuard(authority, "the-token", "WatchRun") as guard:
        waiting = asyncio.create_task(guard.wait(step()))
        await asyncio.sleep(0)  # the step runs and waits
        authority.drop(hash_token("the-token"))
        with pytest.raises(UnauthenticatedError) as refused:
            await waiting
    assert str(refused.value) == "WatchRun ended: unknown or revoked token"
    assert step_cancelled.is_set()


async def test_an_expiry_is_noticed_without_any_change_of_the_tokens() -> None:
    now = [1000.0]
    authority = _authority(now, expires_ms=1_000_500)
    async with OpenCallGuard(authority, "the-token", "PollTask") as guard:
        now[0] = 1001.0  # past the expiry; nothing tells the authority
        with pytest.raises(UnauthenticatedError) as refused:
            await guard.wait(asyncio.Event().wait())
    assert str(refused.value).startswith("PollTask ended: token 'ci' of team payments expired at 1970-")


async def test_a_step_done_first_gives_its_result_and_check_sees_a_refusal_at_once() -> None:
    authority = _authority([1000.0])
    async with OpenCallGuard(authority, "the-token", "PollTask") as guard:
        assert await guard.wait(asyncio.sleep(0, "the task")) == "the task"
        guard.check()  # still accepted
        authority.drop(hash_token("the-token"))
        # No await in between: the guard's own task has not run since the change.
        with pytest.raises(UnauthenticatedError, match=r"^PollTask ended: unknown or revoked token$"):
            guard.check()
