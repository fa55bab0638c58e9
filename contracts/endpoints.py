"""Several coordinator addresses, and which one a client talks to now.

Clients (the CLI, the agent, the UI's gRPC source) may be given several coordinators sharing one
database (``ACCORD_COORDINATOR=a:7440,b:7440``, or a list under ``coordinator:`` in an agent
config). A client talks to one of them; when a call finds it unreachable, it moves on to the next
and tries the same request there (each mutating request carries an id made once, so a retry on
another coordinator after a lost answer never does the work twice).
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

from contracts.errors import InvalidArgumentError, UnreachableError

logger = logging.getLogger(__name__)
T = TypeVar("T")

_ADDRESS = re.compile(r"^[^\s:,]+:\d{1,5}$|^\[[0-9a-fA-F:]+\]:\d{1,5}$")


def parse_addresses(value: str | Iterable[str], what: str = "ACCORD_COORDINATOR") -> list[str]:
    """``host:port`` addresses from ``"a:7440,b:7440"`` or a list; raises naming ``what``."""
    items = value.split(",") if isinstance(value, str) else list(value)
    addresses = [item.strip() for item in items if isinstance(item, str) and item.strip()]
    bad = [a for a in addresses if not _ADDRESS.match(a)]
    bad += [repr(item) for item in items if not isinstance(item, str)]
    if not addresses or bad:
        shown = ", ".join(bad) if bad else "nothing"
        raise InvalidArgumentError(
            f"{what}: {shown} is not host:port; give one or several, e.g. 127.0.0.1:7440 or a:7440,b:7440"
        )
    return list(dict.fromkeys(addresses))


def with_request_id(request: Any) -> Any:
    """``request`` ready for a call that may be tried on several coordinators: a request whose
    message has a ``request_id`` field left empty gets a fresh one (a copy does: the caller's
    message is not changed, so a message sent twice on purpose is two requests). Called once,
    before the first attempt, so every retry (on this coordinator or the next) carries the same
    id and the coordinators do the work once (docs/production.md, "Which calls are safe to
    retry"). Other requests are returned as they are."""
    descriptor = getattr(request, "DESCRIPTOR", None)
    if descriptor is None or "request_id" not in descriptor.fields_by_name or request.request_id:
        return request
    filled = type(request)()
    filled.CopyFrom(request)
    filled.request_id = uuid.uuid4().hex
    return filled


class Endpoints(Generic[T]):
    """The coordinators a client may talk to, one connection (``T``, made by ``connect``) each,
    made when first used; ``current`` is the one in use."""

    def __init__(self, addresses: list[str], connect: Callable[[str], T]) -> None:
        self.addresses = addresses
        self._connect = connect
        self._connections: dict[str, T] = {}
        self._index = 0

    @property
    def address(self) -> str:
        return self.addresses[self._index]

    @property
    def current(self) -> T:
        address = self.address
        connection = self._connections.get(address)
        if connection is None:
            connection = self._connections[address] = self._connect(address)
        return connection

    def failed(self, address: str, why: object) -> bool:
        """``address`` stopped answering: move on to the next coordinator (logged, naming both).
        False when there is no other one to try."""
        if len(self.addresses) < 2:
            return False
        if address == self.address:
            self._index = (self._index + 1) % len(self.addresses)
            logger.warning(
                "the coordinator at %s stopped answering (%s); trying %s", address, why, self.address
            )
        return True

    def try_next(self, address: str, error: Exception, tries_left: int) -> bool:
        """After a call to ``address`` failed with ``error``: whether to send the same request to
        the next coordinator (it was unreachable, there is another, and tries are left)."""
        return tries_left > 0 and isinstance(error, UnreachableError) and self.failed(address, error)

    def connections(self) -> list[T]:
        return list(self._connections.values())
