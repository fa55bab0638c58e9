"""What a request may hold, checked at the edge (docs/production.md, "Limits on requests").

Every gRPC servicer and the UI's HTTP handlers read the fields a caller sends through these
functions, so a bad value is refused with INVALID_ARGUMENT (HTTP 400) naming its field, before
it reaches the engine, the store or an encoder that would fail on it later: numbers finite and in
range, strings bounded and encodable as UTF-8, JSON without NaN/Infinity, bounded in depth and
size, without lone surrogates or integers too long to convert.
"""

from __future__ import annotations

import json
import json.scanner
import math
import re
from collections.abc import Mapping
from typing import Any

import orjson

from contracts.errors import InvalidArgumentError
from contracts.model import RetryPolicy, Timeouts

MAX_JSON_DEPTH = 64
MAX_TEXT_CHARS = 4096  # a name, a reference, a query string, a reason
MAX_INT32 = 2**31 - 1
MAX_PAGE_OFFSET = 10**9
MAX_JSON_INT = 2**63  # integers in JSON payloads: what every store and language can hold
MAX_DURATION_MS = 366 * 86_400_000  # a timeout or a backoff: at most a year
MAX_ATTEMPTS = 1000
MAX_BACKOFF_COEFFICIENT = 100.0
MAX_CONCURRENCY = 1024
MAX_UNIX_MS = 2**53  # a time or a time span in milliseconds
# String fields that carry a document or a payload rather than a name: bounded by the payload
# limit (or the message size), not by MAX_TEXT_CHARS.
LARGE_FIELDS = frozenset(
    {"source_text", "input_json", "output_json", "payload_json", "details_json", "message", "description"}
)


def message(request: Any, field: str = "") -> None:
    """Every string field of a request message (nested ones too) is bounded: names, references
    and query strings by ``MAX_TEXT_CHARS``; documents and payloads (``LARGE_FIELDS``) are left to
    the payload limit."""
    for descriptor, value in request.ListFields():
        name = f"{field}.{descriptor.name}" if field else descriptor.name
        repeated = _repeated(descriptor)
        if descriptor.type == descriptor.TYPE_MESSAGE:
            if descriptor.message_type.GetOptions().map_entry:
                for key, item in value.items():
                    text(key, f"{name} key", MAX_TEXT_CHARS)
                    if isinstance(item, str):
                        text(item, f"{name}[{key[:40]}]", MAX_TEXT_CHARS)
            elif repeated:
                for index, item in enumerate(value):
                    message(item, f"{name}[{index}]")
            else:
                message(value, name)
        elif descriptor.type == descriptor.TYPE_STRING and descriptor.name not in LARGE_FIELDS:
            if repeated:
                for index, item in enumerate(value):
                    text(item, f"{name}[{index}]", MAX_TEXT_CHARS)
            else:
                text(value, name, MAX_TEXT_CHARS)


def text(value: str, field: str, max_chars: int = MAX_TEXT_CHARS) -> str:
    """``value`` when it is at most ``max_chars`` long and encodable as UTF-8."""
    if len(value) > max_chars:
        raise InvalidArgumentError(f"{field} is {len(value)} characters long; the limit is {max_chars}")
    _utf8(value, field)
    return value


def integer(value: int, field: str, low: int = 0, high: int = MAX_INT32) -> int:
    if not low <= value <= high:
        raise InvalidArgumentError(f"{field} is {value}; it must be between {low} and {high}")
    return value


def number(value: float, field: str, low: float, high: float) -> float:
    if not math.isfinite(value) or not low <= value <= high:
        raise InvalidArgumentError(
            f"{field} is {value}; it must be a finite number between {low:g} and {high:g}"
        )
    return value


def page_offset(token: str, field: str = "page.page_token") -> int:
    """The offset a page token this server issued stands for."""
    if not token:
        return 0
    if len(token) > 12 or not token.isascii() or not token.isdigit() or int(token) > MAX_PAGE_OFFSET:
        shown = token if len(token) <= 40 else token[:40] + "..."
        raise InvalidArgumentError(f"{field} '{shown}' is not one this server issued")
    return int(token)


def size(raw: str, field: str, max_bytes: int) -> None:
    """Refuse ``raw`` when its UTF-8 encoding is larger than ``max_bytes`` (--max-payload)."""
    if len(raw) <= max_bytes // 4:
        return
    length = len(raw) if raw.isascii() else len(raw.encode("utf-8", "surrogatepass"))
    if length > max_bytes:
        raise InvalidArgumentError(
            f"{field} is {length} bytes; the limit is {max_bytes} bytes (--max-payload)"
        )


def json_text(raw: str, field: str, max_bytes: int | None = None, empty: Any = None) -> Any:
    """The JSON value in ``raw`` (``empty`` when ``raw`` is empty), refused with the field's name
    when it is too large, not JSON, holds NaN/Infinity or a lone surrogate, nests deeper than
    ``MAX_JSON_DEPTH`` or holds an integer beyond ``MAX_JSON_INT``."""
    if not raw:
        return empty
    if max_bytes is not None:
        size(raw, field, max_bytes)
    plain = _plain(raw)
    if plain:
        # Nothing in it that orjson reads otherwise than json (an integer beyond 64 bits, a lone
        # surrogate, deep nesting): orjson reads it, ~3x faster. It refuses NaN and Infinity, and
        # what is not JSON: json then says why.
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    try:
        value = json.loads(raw, parse_constant=_refuse_constant)
    except _Constant as exc:
        raise InvalidArgumentError(
            f"{field} holds {exc.args[0]}, which JSON does not allow; send a finite number or a string"
        ) from None
    except json.JSONDecodeError as exc:
        raise InvalidArgumentError(
            f"{field} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise InvalidArgumentError(f"{field} nests deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError:  # an integer longer than Python converts (sys.get_int_max_str_digits)
        raise InvalidArgumentError(
            f"{field} holds an integer too long to read; the limit is {MAX_JSON_INT}"
        ) from None
    if not plain:
        json_value(value, field)
    return value


def json_value(value: Any, field: str) -> None:
    """Refuse a decoded JSON value that ``json_text`` would refuse (without a size limit)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise InvalidArgumentError(f"{field} nests deeper than {MAX_JSON_DEPTH} levels")
            if isinstance(item, dict):
                for key, child in item.items():
                    _utf8(key, field)
                    stack.append((child, depth + 1))
            else:
                stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, str):
            _utf8(item, field)
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, int):
            if not -MAX_JSON_INT <= item <= MAX_JSON_INT:
                raise InvalidArgumentError(f"{field} holds an integer beyond ±2^63; send it as a string")
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise InvalidArgumentError(
                    f"{field} holds a number too large for a double (or NaN/Infinity); send a finite number"
                )


def retry_policy(policy: RetryPolicy, field: str) -> RetryPolicy:
    """A retry policy layer whose numbers are finite and in range; unset fields stay unset."""
    if policy.max_attempts is not None:
        integer(policy.max_attempts, f"{field}.max_attempts", 1, MAX_ATTEMPTS)
    for name in ("initial_backoff", "max_backoff"):
        seconds = getattr(policy, name)
        if seconds is not None:
            number(seconds, f"{field}.{name}_ms", 0.0, MAX_DURATION_MS / 1000)
    if policy.backoff_coefficient is not None:
        number(policy.backoff_coefficient, f"{field}.backoff_coefficient", 1.0, MAX_BACKOFF_COEFFICIENT)
    for index, name in enumerate(policy.non_retryable):
        text(name, f"{field}.non_retryable[{index}]", 256)
    return policy


def timeouts(value: Timeouts, field: str) -> Timeouts:
    for name in ("schedule_to_start", "start_to_close", "heartbeat"):
        seconds = getattr(value, name)
        if seconds is not None:
            number(seconds, f"{field}.{name}_ms", 0.0, MAX_DURATION_MS / 1000)
    return value


def _repeated(descriptor: Any) -> bool:
    if hasattr(descriptor, "is_repeated"):  # protobuf >= 5.x
        return bool(descriptor.is_repeated)
    return bool(descriptor.label == descriptor.LABEL_REPEATED)


class _Constant(ValueError):
    pass


def _refuse_constant(name: str) -> Any:
    raise _Constant(name)


def _utf8(value: str, field: str) -> None:
    if value.isascii():
        return
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArgumentError(
            f"{field} holds a lone surrogate (\\ud800-\\udfff), which is not valid UTF-8"
        ) from None


# json_text reads the text it has just decoded, with whole-text operations that run in C, to tell
# whether the value could hold anything json_value refuses; only then does it walk the value, item
# by item in Python, which for a payload of tens of KiB costs several times the decoding. Every
# check below may answer "maybe" for a text that is fine (the walk then decides), never "no" for
# one that is not. The text is valid JSON by then, which the checks rely on: outside strings it
# holds only numbers, literals, brackets, commas, colons and JSON whitespace, and inside strings
# every backslash starts an escape.
#
# The checks read the text as UTF-8 bytes: the characters they look for are all ASCII, and no
# byte of a multi-byte character is one of them. Only the C scanner's reading of numbers and
# escapes is assumed; the pure-Python one accepts more (non-ASCII digits), so without it we walk.
_C_SCANNER = json.scanner.make_scanner.__module__ == "_json"
# Numbers: every digit becomes 0, an exponent's E becomes e, signs go, and whatever may come
# before or after a number outside a string (brackets, commas, colons, whitespace) becomes a comma.
_NUMBER_SHAPE = bytes.maketrans(b"123456789E[]{}:\t\n\r ", b"000000000e,,,,,,,,,")
# An integer beyond 2^63 has at least 19 digits; with its sign dropped, it starts the text or
# follows a comma.
_LONG_INTEGER = b"," + b"0" * 19
# A number with at most 18 digits before its point overflows a double only with an exponent of
# three digits or more (10^18 * 10^99 is finite). Its exponent ends at a comma or at the end of the
# text, which keeps most ids in hex ("123e4567-...") from matching. The pattern starts with a
# literal, which the regex engine scans for quickly, and backtracks over one run of digits at most.
_LONG_EXPONENT = re.compile(rb"e000+(?:,|\Z)")
# A \uD800-\uDFFF escape (hex in either case) is a lone surrogate unless it is a high half
# (D800-DBFF) followed directly by an escape of a low half (DC00-DFFF), which the decoder joins
# into one character: a high half not followed by a low one, or a low half not preceded by a high
# one. Both lookarounds are of fixed width, so the search stays linear.
_LONE_SURROGATE_ESCAPE = re.compile(
    rb"\\u[dD](?:[89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F])"
    rb"|[c-fC-F](?<!\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F]))"
)
# Nesting: only quotes and brackets are kept, and both kinds of bracket become [ and ].
_BRACKETS = bytes.maketrans(b"{}", b"[]")
_NOT_SHAPE = bytes(sorted(set(range(256)) - set(b'"[]{}')))


def _plain(raw: str) -> bool:
    """True when the value of ``raw``, valid JSON, holds nothing ``json_value`` would refuse."""
    if not _C_SCANNER:
        return False
    if raw.isascii():
        data = raw.encode("ascii")
    else:
        try:
            data = raw.encode("utf-8")
        except UnicodeEncodeError:  # a surrogate in the text itself
            return False
    return not (_may_hold_lone_surrogate(data) or _may_hold_big_number(data) or _may_nest_too_deep(data))


def _may_hold_lone_surrogate(data: bytes) -> bool:
    if b"\\" not in data:
        return False
    if b"\\\\" in data:
        # An escaped backslash starts no escape, and is no escape for the pattern to join with:
        # it becomes two other characters. Pairs are taken from the left, as the decoder takes them.
        data = data.replace(b"\\\\", b"--")
    return _LONE_SURROGATE_ESCAPE.search(data) is not None


def _may_hold_big_number(data: bytes) -> bool:
    # Signs are dropped so that a negative number, too, starts right after its comma.
    numbers = data.translate(_NUMBER_SHAPE, b"+-")
    return (
        numbers.startswith(_LONG_INTEGER[1:])
        or _LONG_INTEGER in numbers
        or _LONG_EXPONENT.search(numbers) is not None
    )


def _may_nest_too_deep(data: bytes) -> bool:
    shape = data.translate(_BRACKETS, _NOT_SHAPE)
    # Nesting is at most the number of opening brackets, counting those inside strings too.
    if shape.count(b"[") <= MAX_JSON_DEPTH:
        return False
    if b'\\"' in data:
        # Drop the escapes that could hide or fake a closing quote: each escaped backslash first
        # (pairs taken from the left, as the decoder takes them), then each escaped quote.
        data = data.replace(b"\\\\", b"").replace(b'\\"', b"")
        shape = data.translate(_BRACKETS, _NOT_SHAPE)
    # Now every quote opens or closes a string. Dropping two adjacent quotes leaves every other
    # character inside or outside a string as it was (it removes an empty string, or joins two
    # strings with nothing but non-brackets between them). Quotes left over come from strings that
    # hold brackets: split at them, every other piece is outside the strings.
    shape = shape.replace(b'""', b"")
    if b'"' in shape:
        shape = b"".join(shape.split(b'"')[::2])
    # The brackets outside strings, balanced: each pass removes every innermost pair, so exactly
    # one level of nesting, and the nesting is within the limit when that many passes leave none.
    for _ in range(MAX_JSON_DEPTH):
        shape = shape.replace(b"[]", b"")
        if not shape:
            return False
    return True


def overrides(value: Mapping[str, str], field: str = "overrides") -> dict[str, str]:
    """Rule id -> reason, each bounded (the registry checks the ids against the rules)."""
    if len(value) > 50:
        raise InvalidArgumentError(f"{field} names {len(value)} rules; at most 50")
    return {text(k, f"{field} key", 64): text(v, f"{field}[{k}]", 500) for k, v in value.items()}
