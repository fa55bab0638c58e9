"""Reading YAML/JSON documents with the line of every value, for messages that name the line.

PyYAML composes the document into nodes (each with its ``start_mark``); we build the data from the
nodes ourselves, so each value's JSON pointer gets the line it starts on. The resolver follows
YAML 1.2's core schema rather than PyYAML's YAML 1.1 defaults: ``on:``/``yes``/``no`` stay strings
(``on:`` is a key in workflow triggers) and dates stay strings (``sunset: 2027-03-01``).

A file is text a team sends, so reading it is bounded before any work is done (docs/contracts.md,
"Limits"): its size in bytes is checked before parsing, its nesting while composing, and the values
built from it while building -- an alias (``*name``) is expanded each time it is used, so a few
hundred bytes of nested aliases would otherwise expand to billions of values.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from contracts.errors import Problem

#: The largest contract, workflow or event file read, in bytes (checked before parsing).
MAX_DOCUMENT_BYTES = 1024 * 1024
#: The most values (mappings, lists and scalars, aliases counted each time they are used) a file
#: may hold once its aliases are expanded.
MAX_DOCUMENT_VALUES = 50_000
#: The deepest nesting of mappings and lists in a file.
MAX_DOCUMENT_DEPTH = 64

_BOOL_TAG = "tag:yaml.org,2002:bool"
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 core booleans, no implicit timestamps and a bounded nesting."""

    _depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DOCUMENT_DEPTH:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise _LimitExceeded(
                    mark.line + 1,
                    f"the document nests deeper than {MAX_DOCUMENT_DEPTH} levels "
                    f"(limit {MAX_DOCUMENT_DEPTH}); flatten it",
                )
            node: Node | None = super().compose_node(parent, index)
            return node
        finally:
            self._depth -= 1


class _LimitExceeded(Exception):
    """A file goes over one of the limits above (at ``line``)."""

    def __init__(self, line: int | None, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in (_BOOL_TAG, _TIMESTAMP_TAG)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(_BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


@dataclass
class Document:
    """A parsed file: its data, the line of each JSON pointer, and problems found while reading."""

    data: Any
    source_name: str
    lines: dict[str, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    def line_of(self, pointer: str) -> int | None:
        """The line of ``pointer``, or of its nearest ancestor that has one."""
        while True:
            if pointer in self.lines:
                return self.lines[pointer]
            if not pointer:
                return None
            pointer = pointer.rsplit("/", 1)[0]


def escape(key: str) -> str:
    """Escape one JSON pointer segment."""
    return key.replace("~", "~0").replace("/", "~1")


def pointer_to_field(pointer: str) -> str:
    """``/steps/ship/retry`` -> ``steps.ship.retry`` (array indexes as ``[0]``)."""
    out = ""
    for raw in pointer.split("/")[1:]:
        segment = raw.replace("~1", "/").replace("~0", "~")
        if segment.isdigit():
            out += f"[{segment}]"
        else:
            out += f".{segment}" if out else segment
    return out


class _Builder:
    def __init__(self, loader: _Loader, document: Document) -> None:
        self.loader = loader
        self.document = document
        self.values = 0
        self._open: set[int] = set()  # the collections being built, around this node

    def build(self, node: Node, pointer: str) -> Any:
        if isinstance(node, MappingNode | SequenceNode):
            if id(node) in self._open:
                raise _LimitExceeded(
                    node.start_mark.line + 1,
                    "a YAML alias refers to a list or mapping that holds it (a cycle, e.g. "
                    "'a: &x [*x]'); write the value out",
                )
            self._open.add(id(node))
            try:
                return self._build(node, pointer)
            finally:
                self._open.discard(id(node))
        return self._build(node, pointer)

    def _build(self, node: Node, pointer: str) -> Any:
        self.values += 1
        if self.values > MAX_DOCUMENT_VALUES:
            raise _LimitExceeded(
                node.start_mark.line + 1,
                f"the document holds more than {MAX_DOCUMENT_VALUES} values once its YAML aliases "
                f"are expanded (limit {MAX_DOCUMENT_VALUES}); write it smaller, without aliases "
                "that repeat lists or mappings",
            )
        self.document.lines.setdefault(pointer, node.start_mark.line + 1)
        if isinstance(node, MappingNode):
            return self._mapping(node, pointer)
        if isinstance(node, SequenceNode):
            return [self.build(item, f"{pointer}/{index}") for index, item in enumerate(node.value)]
        if isinstance(node, ScalarNode):
            return self._scalar(node, pointer)
        return None

    def _scalar(self, node: ScalarNode, pointer: str) -> Any:
        try:
            return self.loader.construct_object(node, deep=True)
        except ValueError as exc:  # e.g. an integer of more digits than Python converts (4,300)
            reason = "a number too long to read" if "digits" in str(exc) else str(exc)
            self._problem(node.start_mark.line + 1, pointer, f"cannot read this value: {reason}")
            return None

    def _mapping(self, node: MappingNode, pointer: str) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if key_node.tag == "tag:yaml.org,2002:merge":
                self._problem(line, pointer, "YAML merge keys ('<<') are not supported; write the keys out")
                continue
            key = self._scalar(key_node, pointer) if isinstance(key_node, ScalarNode) else None
            if isinstance(key, bool) or key is None or not isinstance(key, str | int | float):
                self._problem(line, pointer, "a key must be a plain string; quote it")
                continue
            key = str(key)
            child = f"{pointer}/{escape(key)}"
            if key in result:
                self._problem(
                    line, child, f"duplicate key '{key}' (first at line {self.document.lines[child]})"
                )
                continue
            self.document.lines[child] = line
            result[key] = self.build(value_node, child)
        return result

    def _problem(self, line: int, pointer: str, message: str) -> None:
        self.document.problems.append(
            Problem(self.document.source_name, message, line, pointer_to_field(pointer))
        )


def _compose(text: str, document: Document) -> Any:
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        return None if node is None else _Builder(loader, document).build(node, "")
    finally:
        loader.dispose()


def parse_document(text: str, source_name: str) -> Document:
    """Parse YAML (or JSON, which is YAML) text; syntax errors become problems with line/column."""
    document = Document(data=None, source_name=source_name)
    size = len(text) if len(text) > MAX_DOCUMENT_BYTES else len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_DOCUMENT_BYTES:
        document.problems.append(
            Problem(
                source_name,
                f"the file is {size} bytes, over the limit of {MAX_DOCUMENT_BYTES} bytes; "
                "split it or make it smaller",
                1,
            )
        )
        return document
    if source_name.endswith(".json"):
        try:
            json.loads(text)
        except RecursionError:
            document.problems.append(
                Problem(
                    source_name,
                    f"the document nests deeper than {MAX_DOCUMENT_DEPTH} levels "
                    f"(limit {MAX_DOCUMENT_DEPTH}); flatten it",
                    1,
                )
            )
            return document
        except json.JSONDecodeError as exc:
            document.problems.append(
                Problem(
                    source_name,
                    f"malformed JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})",
                    exc.lineno,
                )
            )
            return document
    try:
        document.data = _compose(text, document)
    except _LimitExceeded as exc:
        document.data = None
        document.problems.append(Problem(source_name, exc.message, exc.line))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = " ".join(part for part in (exc.context, exc.problem) if part)
        if mark is None:
            document.problems.append(Problem(source_name, f"malformed YAML: {what}"))
        else:
            document.problems.append(
                Problem(
                    source_name,
                    f"malformed YAML: {what} (line {mark.line + 1}, column {mark.column + 1})",
                    mark.line + 1,
                )
            )
    except yaml.YAMLError as exc:
        document.problems.append(Problem(source_name, f"malformed YAML: {exc}"))
    return document
