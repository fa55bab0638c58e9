"""A real TCP proxy a test can cut: everything between a coordinator and PostgreSQL passes
through it, so a test can take the database away from a running coordinator and give it back.

    proxy = TcpProxy.start("127.0.0.1", 5432)
    url = pg_database.url_via(proxy.port)     # or build the URL with proxy.port
    proxy.cut()       # every open connection closed at once (reset), new ones refused
    proxy.restore()   # new connections accepted again, on the same port
    proxy.lose_answer_to(b"COMMIT")  # the next such message reaches the server, its answer is lost
    proxy.hold_back(b"COMMIT")       # the next such message is lost, the server left waiting
    proxy.close()

It runs its own event loop in a thread of its own, so it keeps forwarding while the test blocks
(``CoordinatorProcess.start`` waits synchronously) and a test's loop needs to do nothing for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_CHUNK = 64 * 1024


class TcpProxy:
    __test__ = False

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tcp-proxy", daemon=True)
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0
        self.accepted = 0  # connections accepted so far (to check a test went through the proxy)
        self._trigger: tuple[bytes, bool] | None = None  # (bytes, delivered?)
        self._held: set[asyncio.StreamWriter] = set()
        self.triggered = 0

    @classmethod
    def start(cls, target_host: str, target_port: int) -> TcpProxy:
        proxy = cls(target_host, target_port)
        proxy._thread.start()
        proxy._call(proxy._listen())
        return proxy

    @property
    def connections(self) -> int:
        """Connections open through the proxy now (client sides)."""
        return self._call(self._count())

    def cut(self) -> None:
        """Stop listening (new connections are refused) and reset every open connection, both
        ways: to each side it is as if the other had gone away."""
        self._call(self._cut())

    def restore(self) -> None:
        """Listen again on the same port."""
        self._call(self._listen())

    def lose_answer_to(self, trigger: bytes) -> None:
        """Once: the next data a client sends that contains ``trigger`` (``b"COMMIT"``) is
        passed to the server; the server's answer to it is not passed back, and that connection
        is reset instead. The client cannot know whether the server did it."""
        self._call(self._arm((trigger, True)))

    def hold_back(self, trigger: bytes) -> None:
        """Once: the next data a client sends that contains ``trigger`` never reaches the
        server, and the client's connection is reset; the server's side stays open, silent, as
        behind a broken network (until ``cut`` or ``close``)."""
        self._call(self._arm((trigger, False)))

    def close(self) -> None:
        if not self._loop.is_running():
            return
        self._call(self._cut())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    # ---------- inside the proxy's loop ----------

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)

    async def _arm(self, trigger: tuple[bytes, bool]) -> None:
        self._trigger = trigger

    async def _count(self) -> int:
        return len(self._open) // 2

    async def _listen(self) -> None:
        if self._server is not None:
            return
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        self._server = await asyncio.start_server(self._accept, sock=sock)
        self.port = sock.getsockname()[1]

    async def _cut(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()  # the listening socket: new connections are refused from now on
        for writer in list(self._open):
            writer.transport.abort()
        self._open.clear()
        self._held.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if server is not None:
            await server.wait_closed()  # (it waits for the connections it accepted to end)

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            server_reader, server_writer = await asyncio.open_connection(*self._target)
        except OSError:
            client_writer.transport.abort()
            return
        if self._server is None:  # cut while connecting
            client_writer.transport.abort()
            server_writer.transport.abort()
            return
        pair = {client_writer, server_writer}
        self._open |= pair
        doomed = asyncio.Event()  # a triggering message went to the server: drop its answer
        pipes = [
            asyncio.ensure_future(self._to_server(client_reader, server_writer, doomed)),
            asyncio.ensure_future(_to_client(server_reader, client_writer, doomed)),
        ]
        self._tasks.update(pipes)
        try:
            # Either side closing ends the pair: PostgreSQL's protocol needs no half-open socket.
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pipe in pipes:
                pipe.cancel()
                self._tasks.discard(pipe)
            for writer in pair - self._held:
                self._open.discard(writer)
                writer.transport.abort()

    async def _to_server(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, doomed: asyncio.Event
    ) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(_CHUNK):
                trigger = self._trigger
                if trigger is None or trigger[0] not in data:
                    writer.write(data)
                    await writer.drain()
                    continue
                self._trigger = None
                self.triggered += 1
                if not trigger[1]:
                    self._held.add(writer)  # the server's side: left open, never written to again
                    return
                doomed.set()  # before it goes out: whatever the server says next is dropped
                writer.write(data)
                await writer.drain()
                await asyncio.Future()  # forward nothing more; the answer ends the pair


async def _to_client(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, doomed: asyncio.Event
) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(_CHUNK):
            if doomed.is_set():
                return  # the server answered what the client will never hear of
            writer.write(data)
            await writer.drain()
