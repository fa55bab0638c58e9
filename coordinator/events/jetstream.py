"""NATS JetStream EventBus (``--events nats://HOST:4222``): for coordinators that share a store.

One stream per installation (``--events-stream NAME``, default ``ACCORD``) holds the subjects
``NAME.<team>.<event>.v<major>``; several installations (and tests) may share one NATS server
with a stream each. A message carries the event's id (and, for people reading the stream, the
event); the store holds the truth. Publishing sets ``Nats-Msg-Id`` to the event id, so the
stream keeps one message per event however often a coordinator hands it on within the
duplicate window. One durable pull consumer (``accord-triggers``) is shared by every
coordinator of the installation: each message goes to one of them, is acknowledged after its
triggers ran, and comes again (to any of them) if it was not acknowledged within
``ACK_WAIT_S``: a coordinator killed mid-way loses nothing, and the triggers' idempotency keys
make a second delivery start nothing twice. See docs/production.md, "Events".

nats-py is the optional ``nats`` extra: this module is imported only when ``--events`` names a
NATS server.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from pathlib import Path
from urllib.parse import urlsplit

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, StorageType, StreamConfig

from contracts.errors import UnreachableError
from coordinator.events.base import EventHandler
from coordinator.store.records import EventRecord

logger = logging.getLogger(__name__)

CONSUMER = "accord-triggers"
# A message not acknowledged this long after it was handed to a coordinator goes to another:
# longer than any trigger handling takes, short enough that a killed coordinator's events are
# taken over soon.
ACK_WAIT_S = 10.0
# JetStream drops a second message with the same Nats-Msg-Id within this window.
DUPLICATE_WINDOW_S = 120.0
# How long the connection at start, and a publish, may take.
CONNECT_TIMEOUT_S = 5.0
PUBLISH_TIMEOUT_S = 5.0
# Messages fetched (and handled at once) per pull.
BATCH = 32


def server_address(url: str) -> str:
    """``HOST:PORT`` of each server in ``url`` (comma-separated), without any credentials."""
    addresses = []
    for part in url.split(","):
        parts = urlsplit(part.strip() if "://" in part else f"nats://{part.strip()}")
        addresses.append(f"{parts.hostname or ''}:{parts.port or 4222}")
    return ",".join(addresses)


def subject(prefix: str, event: EventRecord) -> str:
    """``<prefix>.<team>.<event>.v<major>``: names are lowercase letters, digits and '-', so
    each is one subject token."""
    team, _, name = event.contract.partition("/")
    major = event.contract_version.split(".", 1)[0]
    return f"{prefix}.{team}.{name}.v{major}"


class JetStreamEventBus:
    def __init__(self, url: str, stream: str, retention_s: float, credentials: Path | None = None) -> None:
        self._url = url
        self._stream = stream
        self._retention_s = retention_s
        self._credentials = credentials
        self._nc: NatsClient | None = None
        self._consumer: asyncio.Task[None] | None = None
        self._handler: EventHandler | None = None
        self._last_error: BaseException | None = None
        self._server_error: BaseException | None = None
        self._connected = False
        self._reconnecting: asyncio.Task[None] | None = None

    @property
    def where(self) -> str:
        return f"NATS at {server_address(self._url)}"

    def available(self) -> bool:
        return self._nc is not None and self._connected

    async def start(self, handler: EventHandler) -> None:
        self._handler = handler
        servers = [s.strip() for s in self._url.split(",") if s.strip()]
        options: dict[str, object] = {}
        if any(s.startswith("tls://") for s in servers):
            options["tls"] = ssl.create_default_context()
        if self._credentials is not None:
            options["user_credentials"] = str(self._credentials)
        try:
            # nats-py tries for ever when told to reconnect for ever (as it must, later on):
            # the first connection is bounded here.
            self._nc = await asyncio.wait_for(
                nats.connect(
                    servers=servers,
                    connect_timeout=CONNECT_TIMEOUT_S / 2,
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=0.5,
                    error_cb=self._on_error,
                    disconnected_cb=self._on_disconnected,
                    reconnected_cb=self._on_reconnected,
                    **options,
                ),
                CONNECT_TIMEOUT_S,
            )
        except Exception as exc:  # refused, unreachable, a credentials file nats-py cannot read
            # What the server said (an authorization violation) over how the socket then ended.
            reason = self._server_error or self._last_error or exc
            raise UnreachableError(f"cannot connect to {self.where} (--events): {_reason(reason)}") from None
        self._connected = True
        self._js = self._nc.jetstream(timeout=PUBLISH_TIMEOUT_S)
        try:
            await self._set_up_stream()
        except (TimeoutError, nats.errors.Error) as exc:
            await self.close()
            raise UnreachableError(
                f"{self.where} (--events): cannot set up the stream {self._stream}: {_reason(exc)}"
                " (is JetStream enabled on the server?)"
            ) from None
        self._consumer = asyncio.create_task(self._consume(), name="events-consumer")
        logger.info(
            "events go through %s, stream %s (subjects %s.>), kept %s",
            self.where,
            self._stream,
            self._stream,
            f"{self._retention_s:.0f}s" if self._retention_s else "with no age limit (retention off)",
        )

    async def _set_up_stream(self) -> None:
        """The stream and its consumer, as configured: created, or updated to these limits
        (an earlier --events-retention); nothing when they are so already."""
        config = StreamConfig(
            name=self._stream,
            subjects=[f"{self._stream}.>"],
            max_age=self._retention_s,  # 0: no age limit (run retention off)
            duplicate_window=min(DUPLICATE_WINDOW_S, self._retention_s or DUPLICATE_WINDOW_S),
            storage=StorageType.FILE,
        )
        try:
            await self._js.add_stream(config)
        except nats.js.errors.BadRequestError:
            await self._js.update_stream(config)
        await self._js.add_consumer(
            self._stream,
            ConsumerConfig(
                durable_name=CONSUMER,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=ACK_WAIT_S,
                max_deliver=-1,
                filter_subject=f"{self._stream}.>",
            ),
        )

    async def publish(self, event: EventRecord) -> None:
        if not self.available():
            raise UnreachableError(f"{self.where} is unreachable: {_reason(self._last_error)}")
        body = json.dumps(
            {
                "event_id": event.event_id,
                "contract": event.contract,
                "contract_version": event.contract_version,
                "team": event.team,
                "published_ms": event.published_ms,
            }
        ).encode()
        try:
            await self._js.publish(
                subject(self._stream, event),
                body,
                timeout=PUBLISH_TIMEOUT_S,
                stream=self._stream,
                headers={"Nats-Msg-Id": event.event_id},
            )
        except (TimeoutError, nats.errors.Error) as exc:
            raise UnreachableError(
                f"{self.where} did not take event {event.event_id}: {_reason(exc)}"
            ) from None

    async def _consume(self) -> None:
        """Pull messages and run their triggers; acknowledge each once they ran, refuse it (to
        be delivered again soon) when they could not."""
        subscription = None
        pause = 0.1
        while True:
            try:
                if subscription is None:
                    subscription = await self._js.pull_subscribe_bind(CONSUMER, self._stream)
                messages = await subscription.fetch(BATCH, timeout=1.0)
                pause = 0.1
            except nats.errors.TimeoutError:
                continue  # nothing new
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the server went away: nats-py reconnects; try again
                logger.debug("pulling events from %s failed: %s", self.where, exc)
                subscription = None  # bound again (the consumer may have been made anew)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 2.0)
                continue
            await asyncio.gather(*(self._deliver(message) for message in messages))

    async def _deliver(self, message: Msg) -> None:
        assert self._handler is not None
        event_id = (message.headers or {}).get("Nats-Msg-Id", "")
        try:
            event_id = event_id or json.loads(message.data)["event_id"]
        except (ValueError, KeyError, TypeError):
            logger.warning("a message on %s without an event id was dropped", message.subject)
            await _quietly(message.term())
            return
        try:
            await self._handler(event_id)
        except Exception as exc:
            logger.warning("the triggers of event %s did not run (%s); it comes again", event_id, exc)
            await _quietly(message.nak(delay=1.0))
            return
        # Lost with the connection: the message comes again after ACK_WAIT_S, and its triggers
        # find their runs started.
        await _quietly(message.ack())

    async def _on_error(self, exc: Exception) -> None:
        self._last_error = exc
        if isinstance(exc, nats.errors.Error) and not isinstance(exc, nats.errors.TimeoutError):
            self._server_error = exc

    async def _on_disconnected(self) -> None:
        if self._connected:
            logger.error(
                "%s is unreachable (%s): publishing events is refused (UNAVAILABLE, try again) and"
                " triggers wait until it is back",
                self.where,
                _reason(self._last_error),
            )
        self._connected = False

    async def _on_reconnected(self) -> None:
        # Off nats-py's reconnecting task, which waits for this callback.
        self._reconnecting = asyncio.create_task(self._back(), name="events-reconnected")

    async def _back(self) -> None:
        # A server that came back without its storage has lost the stream: make it again.
        try:
            await self._set_up_stream()
        except (TimeoutError, nats.errors.Error) as exc:
            logger.error("%s is back, but the stream %s cannot be set up: %s", self.where, self._stream, exc)
        self._connected = True
        logger.warning("%s is reachable again: events are published and triggers run", self.where)

    async def close(self) -> None:
        if self._consumer is not None:
            self._consumer.cancel()
            await asyncio.gather(self._consumer, return_exceptions=True)
            self._consumer = None
        if self._nc is not None:
            nc, self._nc = self._nc, None
            self._connected = False
            try:
                await asyncio.wait_for(nc.close(), CONNECT_TIMEOUT_S)
            except Exception as exc:
                logger.debug("closing the connection to %s: %s", self.where, exc)


def _reason(exc: BaseException | None) -> str:
    if exc is None:
        return "no answer"
    if isinstance(exc, ConnectionRefusedError):
        return "Connection refused"
    text = str(exc).strip()
    if text.startswith("nats: "):  # nats-py's prefix; the server's words are quoted
        text = text[len("nats: ") :].strip().strip("'")
    return text or type(exc).__name__


async def _quietly(work: object) -> None:
    try:
        await work  # type: ignore[misc]
    except Exception as exc:
        logger.debug("acknowledging a message failed: %s", exc)
