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


def _watchers() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if t.get_name() == "open-call-tokens" and not t.done()]


async def test_the_calls_of_many_tokens_share_one_task_and_a_refusal_ends_only_its_own() -> None:
    authority = _authority([1000.0])
    authority.set_team_token("payments", hash_token("other-token"), name="other", expires_ms=0)
    before = len(asyncio.all_tasks())
    guards = [OpenCallGuard(authority, token, "WatchRun") for token in ["the-token", "other-token"] * 25]
    steps = [asyncio.create_task(guard.wait(asyncio.Event().wait())) for guard in guards]
    await asyncio.sleep(0)
    # The 50 steps, and for all their tokens one task (and the wait it is in), not one per call.
    assert len(asyncio.all_tasks()) - before - 50 <= 2 and len(_watchers()) == 1

    authority.drop(hash_token("the-token"))
    done, pending = await asyncio.wait(steps, timeout=5, return_when=asyncio.ALL_COMPLETED)
    assert len(done) == 25 and len(pending) == 25, "the other token's calls were ended too"
    for step in done:
        assert str(step.exception()) == "WatchRun ended: unknown or revoked token"
    assert all(steps[i] in pending for i in range(1, 50, 2))

    for step in pending:
        step.cancel()  # the calls themselves cancelled: no refusal, a plain cancellation
    outcomes = await asyncio.gather(*pending, return_exceptions=True)
    assert all(isinstance(o, asyncio.CancelledError) for o in outcomes), outcomes
    for guard in guards:
        await guard.close()
    # With no call open, the task ends (at its next look, within TOKEN_RECHECK_S).
    for _ in range(40):
        if not _watchers():
            break
        await asyncio.sleep(0.05)
    assert not _watchers()


async def test_a_step_that_takes_the_cancellation_and_ends_gives_its_result() -> None:
    authority = _authority([1000.0])
    entered = asyncio.Event()

    async def stubborn() -> str:
        entered.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            return "handed back"  # e.g. a task given back, then an answer of its own
        return "never"

    async with OpenCallGuard(authority, "the-token", "PollTask") as guard:

        async def call() -> tuple[str, int]:
            result = await guard.wait(stubborn())
            return result, asyncio.current_task().cancelling()  # type: ignore[union-attr]

        calling = asyncio.create_task(call())
        await entered.wait()
        authority.drop(hash_token("the-token"))
        result, cancelling = await asyncio.wait_for(calling, 5)
        assert (result, cancelling) == ("handed back", 0)  # the guard took its cancellation back
        with pytest.raises(UnauthenticatedError):
            guard.check()
        with pytest.raises(UnauthenticatedError):
            await guard.wait(asyncio.sleep(0))  # refused already: no step is started
