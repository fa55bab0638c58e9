"""Keep secret values inside the agent.

One ``Redactor`` knows every secret value the agent resolved. It is applied at every edge where
text leaves the process: the gateway client (``team_agent.client``), the log handlers (a
``logging.Filter``) and the span exporter (``team_agent.tracing``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, quote_plus

import orjson

from contracts.jsontext import plain

MASK = "***"


def _encodings(value: str) -> set[str]:
    """The forms a value commonly takes once embedded in text: as is, JSON-escaped (with and
    without ASCII escaping), Python-repr-escaped, URL-encoded."""
    forms = {
        value,
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
        repr(value)[1:-1],
        quote(value, safe=""),
        quote_plus(value, safe=""),
    }
    return {f for f in forms if f}


def _keys_are_str(value: Any) -> bool:
    """Whether every dict key in ``value`` is a str (not a subclass): orjson refuses any other
    key, in C. Its text is not used; ``False`` also for what it cannot encode at all (an integer
    beyond 64 bits, nesting past 254 levels), which the caller then takes the long way."""
    try:
        orjson.dumps(value, default=_anything)
    except TypeError:
        return False
    return True


def _anything(value: Any) -> None:
    """orjson's ``default``: a value of a type it does not know holds no dict to check."""
    return None


class Redactor:
    """Replaces every known secret value (in its common encodings) with ``***``.

    Values are only ever added: after a config reload the old values may still sit in the
    output of a task that started before it.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._forms: list[str] = []
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        forms = set(self._forms)
        for secret in secrets:
            if secret:
                forms |= _encodings(secret)
        # Longest first, so a secret containing another one is masked whole.
        self._forms = sorted(forms, key=len, reverse=True)
        self._encoded = tuple(form.encode() for form in self._forms)

    def encoded_forms(self) -> tuple[bytes, ...]:
        """Every form, UTF-8 encoded (to look for in serialized bytes)."""
        return self._encoded

    def __bool__(self) -> bool:
        return bool(self._forms)

    def found_in(self, text: str) -> bool:
        """Whether any secret (in any of its forms) occurs in ``text``."""
        return any(form in text for form in self._forms)

    def text(self, text: str) -> str:
        for form in self._forms:
            if form in text:
                text = text.replace(form, MASK)
        return text

    def value(self, value: Any) -> Any:
        """A JSON-like value with every string (keys too) redacted."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.text(str(k)): self.value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(v) for v in value]
        return value

    def json(self, value: Any) -> str:
        """Serialise ``value`` as JSON with secrets masked in its strings (keys too), before
        serialising: a number, a boolean or JSON punctuation that happens to spell a secret is
        data, never altered (masking the serialised text would break it: ``{"n":***}``).

        Most values hold no secret. Their text is serialised from the value as it is, without
        ``value``'s walk through it in Python (half of an agent's CPU on a 64 KiB output). That
        gives the same value exactly when every key is a str, as the walk makes them, and no form
        of a secret is in the text: JSON escapes character by character, so a string holding a
        secret holds its escaped form (one of ``_encodings``: orjson escapes as ``json`` does
        with ``ensure_ascii=False``) in the text. A value of JSON's own types only (most are:
        an engine's output is read from JSON) is written by orjson (``jsontext.plain``, ~4x
        faster than ``json`` at 64 KiB), any other by ``json`` as before."""
        text = plain(value)
        if text is None and _keys_are_str(value):
            text = json.dumps(value, separators=(",", ":"), default=str)
        if text is not None and not self.found_in(text):
            return text
        return json.dumps(self.value(value), separators=(",", ":"), default=str)

    def json_text(self, text: str) -> str:
        """Mask secrets in the strings of JSON text; the text is returned unchanged (byte for
        byte) when none of its strings holds one. Text that is not JSON is masked as text."""
        if not self._forms or not text:
            return text
        try:
            parsed = json.loads(text)
        except ValueError:
            return self.text(text)
        masked = self.value(parsed)
        return text if masked == parsed else json.dumps(masked, separators=(",", ":"), default=str)


class RedactingFilter(logging.Filter):
    """Masks secrets in a record's message, arguments, exception text and extra string fields.
    Attach it to handlers (not loggers), so records from every logger pass through it."""

    _STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self._redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        redactor = self._redactor
        if not redactor:
            return True
        record.msg = redactor.text(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redactor.text(record.exc_text)
            record.exc_info = None
        if record.stack_info:
            record.stack_info = redactor.text(record.stack_info)
        for key, value in list(record.__dict__.items()):
            if key not in self._STANDARD and isinstance(value, str | dict | list):
                record.__dict__[key] = redactor.value(value)
        return True
