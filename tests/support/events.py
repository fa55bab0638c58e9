"""Events in tests: wait until an event's triggers ran, and a JetStream stream per test.

event = await handled(client, event_id)          # GetEvent until handled_unix_ms is set
with nats_stream() as stream: ...                 # a fresh stream name; deleted at the end
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager

from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
from coordinator.client import AsyncClient

NATS_URL = "nats://127.0.0.1:4222"


async def handled(client: AsyncClient, event_id: str, within: float = 60.0) -> pb.Event:
    """The event once its triggers ran (they run after the publish is answered)."""
    deadline = time.monotonic() + within  # an upper bound on a loaded machine, not a timing
    while True:
        event = (await client.coordinator.GetEvent(pb.GetEventRequest(event_id=event_id))).event
        if event.handled_unix_ms:
            return event
        assert time.monotonic() < deadline, f"the triggers of {event_id} did not run: {event}"
        await asyncio.sleep(0.05)


def delete_stream(name: str) -> None:
    """Delete a JetStream stream (its consumer with it); nothing if it is not there."""
    import nats
    import nats.js.errors

    async def delete() -> None:
        nc = await nats.connect(NATS_URL)
        try:
            try:
                await nc.jetstream().delete_stream(name)
            except nats.js.errors.NotFoundError:
                pass
        finally:
            await nc.close()

    asyncio.run(delete())


@contextmanager
def nats_stream() -> Iterator[str]:
    """A stream name of this test's own (``--events-stream``), deleted when it ends."""
    name = f"TEST_{secrets.token_hex(6)}"
    try:
        yield name
    finally:
        delete_stream(name)
