"""Serve an ASGI app with uvicorn on 127.0.0.1, port 0: in a thread of its own (reachable both
from the test's event loop and from agent subprocesses, whatever the test's style), or as a task
on the test's own event loop."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import uvicorn


@contextlib.contextmanager
def serve_in_thread(app: Any) -> Iterator[str]:
    """Start ``app`` and yield its base URL (``http://127.0.0.1:PORT``); stop it on exit."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    loop = asyncio.new_event_loop()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(server.serve())

    thread = threading.Thread(target=run, name="fake-engine", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60  # an upper bound: a loaded machine may need it
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the fake engine's server did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextlib.asynccontextmanager
async def serve_in_loop(app: Any) -> AsyncIterator[str]:
    """Start ``app`` on the running event loop and yield its base URL; stop it on exit."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    )
    serving = asyncio.create_task(server.serve())
    deadline = time.monotonic() + 60  # an upper bound: a loaded machine may need it
    while not server.started:
        if serving.done():
            serving.result()  # raises why it stopped
            raise RuntimeError("the server stopped before it started")
        if time.monotonic() > deadline:
            raise RuntimeError("the server did not start")
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await serving


async def form_fields(request: Any) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body as a dict (Starlette's own form parsing
    needs python-multipart, which Accord does not depend on)."""
    from urllib.parse import parse_qsl

    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return {}
    return dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
