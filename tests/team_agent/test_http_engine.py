"""The http engine against a real HTTP server (Starlette on uvicorn, port 0)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from team_agent.engines.base import EngineConfigError, EngineFailure
from team_agent.engines.http import HttpEngine
from tests.fakes.server import serve_in_loop
from tests.team_agent.agent_testkit import TRACEPARENT, context

seen: list[dict[str, Any]] = []


async def echo(request: Request) -> Response:
    seen.append({"headers": dict(request.headers), "body": await request.json()})
    return JSONResponse({"echo": await request.json()})


async def status(request: Request) -> Response:
    code = int(request.path_params["code"])
    if code == 402:
        return JSONResponse(
            {"error": {"type": "CardDeclined", "message": "insufficient funds"}}, status_code=402
        )
    return PlainTextResponse("nope", status_code=code)


async def slow(request: Request) -> Response:
    await asyncio.sleep(1)
    return JSONResponse({})


async def not_json(request: Request) -> Response:
    return PlainTextResponse("<html>ok</html>")


async def redirect(request: Request) -> Response:
    return RedirectResponse("/echo", status_code=307)


APP = Starlette(
    routes=[
        Route("/echo", echo, methods=["POST"]),
        Route("/status/{code}", status, methods=["POST"]),
        Route("/slow", slow, methods=["POST"]),
        Route("/not-json", not_json, methods=["POST"]),
        Route("/redirect", redirect, methods=["POST"]),
    ]
)


@pytest.fixture
async def base_url() -> AsyncIterator[str]:
    async with serve_in_loop(APP) as url:
        yield url


async def post(url: str, value: Any = None, **options: Any) -> Any:
    engine = HttpEngine({"url": url, **options})
    try:
        return await engine.wait(await engine.submit(context(), value if value is not None else {"a": 1}))
    finally:
        await engine.close()


async def test_posts_json_with_trace_and_idempotency_headers(base_url: str) -> None:
    seen.clear()
    result = await post(f"{base_url}/echo", {"order_id": "o-1"}, headers={"Authorization": "Bearer t"})
    assert result == {"echo": {"order_id": "o-1"}}
    headers = seen[0]["headers"]
    assert headers["traceparent"] == TRACEPARENT
    assert headers["idempotency-key"] == "idem-1"
    assert headers["authorization"] == "Bearer t"
    assert headers["x-accord-run-id"] == "run-1"


@pytest.mark.parametrize(
    ("code", "error_type", "retryable"),
    [
        (500, "HTTP500", True),
        (503, "HTTP503", True),
        (429, "HTTP429", True),
        (408, "HTTP408", True),
        (404, "HTTP404", False),
        (402, "CardDeclined", False),
    ],
)
async def test_status_codes_map_to_failures(
    base_url: str, code: int, error_type: str, retryable: bool
) -> None:
    with pytest.raises(EngineFailure) as caught:
        await post(f"{base_url}/status/{code}")
    assert (caught.value.type, caught.value.retryable) == (error_type, retryable)
    assert caught.value.details["status"] == code


async def test_redirects_are_not_followed(base_url: str) -> None:
    with pytest.raises(EngineFailure) as caught:
        await post(f"{base_url}/redirect")
    assert caught.value.type == "HTTP307" and not caught.value.retryable
    assert caught.value.details["location"].endswith("/echo")


async def test_a_slow_service_times_out_retryably(base_url: str) -> None:
    with pytest.raises(EngineFailure) as caught:
        await post(f"{base_url}/slow", timeout="200ms")
    assert (caught.value.type, caught.value.retryable) == ("Timeout", True)


async def test_a_body_that_is_not_json_is_not_retryable(base_url: str) -> None:
    with pytest.raises(EngineFailure) as caught:
        await post(f"{base_url}/not-json")
    assert (caught.value.type, caught.value.retryable) == ("InvalidOutput", False)


async def test_an_unreachable_service_is_retryable() -> None:
    with pytest.raises(EngineFailure) as caught:
        await post("http://127.0.0.1:9/x")
    assert (caught.value.type, caught.value.retryable) == ("ConnectionError", True)


def test_bad_options() -> None:
    with pytest.raises(EngineConfigError) as caught:
        HttpEngine({"url": "ftp://x", "timeout": "soon", "method": "GET"})
    assert {f for f, _ in caught.value.problems} == {"url", "timeout", "method"}
