"""Hunt for unsound "compatible" verdicts over every keyword the checker claims to understand.

Schema pairs are drawn from a grammar covering ``unevaluatedProperties``/``unevaluatedItems``
beside ``properties``/``prefixItems``/combinators, ``$ref`` (also inside a subschema with its own
``$id``), ``multipleOf`` with fractions, ``anyOf``/``oneOf``/``allOf``/``not``,
``dependentSchemas``/``dependentRequired``, ``patternProperties``, ``propertyNames``,
``minProperties``/``maxProperties``, ``additionalProperties`` as a schema, ``if``/``then``/``else``,
enums, formats, and ``pattern`` beside ``minLength``/``maxLength``. NEW is OLD after one or two random
edits. Whenever the checker says "compatible" (input: old ⊆ new; output: new ⊆ old), a search
looks for a breaking instance among small instances built from the schemas' own constants (enum
values, bounds, multiples, property names), validated by the very validator Accord runs. Any
instance found fails the test with both schemas and the instance, as a JSON entry to add to the
corpus (``compat_corpus.json`` beside this file), which is replayed first on every run; pairs
whose refusal once claimed a break no whole value shows are kept there too (rule ``claims``). Every
refusal that names an example value is checked too: it must carry the whole value
(``Finding.example``, also for a field's example or a field now required), valid under the whole
old schema and invalid under the whole new one (input; the other way round for output); a
refusal without one must say it cannot prove the change safe.

``make test`` draws a few hundred pairs (well under a minute); ``make soak`` many thousands.
"""

from __future__ import annotations

import copy
import itertools
import json
from collections import Counter
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, assume, given, settings

from contracts.compat import check_input_compat, check_output_compat
from contracts.errors import InvalidSchemaError
from contracts.validation import compiled_validator
from tests.support.soak import sized

Schema = dict[str, Any]
CORPUS = Path(__file__).with_name("compat_corpus.json")
NAMES = ["a", "b", "c"]
MULTIPLES = [1, 2, 3, 0.1, 0.2, 0.3, 0.5, 0.7, 1.5, 2.0]
SMALL = [-1, 0, 1, 2, 3]
BASE_VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    1,
    2,
    -1,
    0.5,
    0.7,
    0.3,
    1.5,
    "",
    "a",
    "ab",
    "2020-01-01",
    "x",
]
FORMATS = ["date", "email", "ipv4"]
# Patterns whose implied lengths the checker reasons about, and some it must not read.
PATTERNS = [
    "^[a-z]{3}$",
    "^a+$",
    "^[a-z]{1,2}$",
    "^x",
    "^\\d{2}$",
    "^(ab|c)$",
    "^[[:alpha:]]{2}$",
    "^.{0,3}$",
]
REF = "#/$defs/d"
PROPERTY_PATTERNS = ["^a", "^x", "b$", "^[ab]$"]
PROPERTY_NAMES: list[Schema] = [
    {"maxLength": 1},
    {"maxLength": 0},
    {"enum": ["a", "b"]},
    {"pattern": "^[a-c]$"},
    {"not": {"const": "x"}},
]


# ------------------------------------------------------------------------------- the grammar


def leaf(draw: st.DrawFn) -> Schema:
    kind = draw(
        st.sampled_from(["number", "integer", "string", "enum", "const", "boolean", "null", "any", "nothing"])
    )
    if kind in ("number", "integer"):
        s: Schema = {"type": kind}
        if draw(st.booleans()):
            s["multipleOf"] = draw(st.sampled_from(MULTIPLES))
        if draw(st.booleans()):
            s[draw(st.sampled_from(["minimum", "exclusiveMinimum"]))] = draw(st.sampled_from(SMALL))
        if draw(st.booleans()):
            s[draw(st.sampled_from(["maximum", "exclusiveMaximum"]))] = draw(st.sampled_from(SMALL)) + 2
        return s
    if kind == "string":
        s = {"type": "string"}
        if draw(st.booleans()):
            s["maxLength"] = draw(st.integers(0, 3))
        if draw(st.integers(0, 2)) == 0:
            s["minLength"] = draw(st.integers(1, 3))
        if draw(st.integers(0, 2)) == 0:
            s["pattern"] = draw(st.sampled_from(PATTERNS))
        if draw(st.integers(0, 3)) == 0:
            s["format"] = draw(st.sampled_from(FORMATS))
        return s
    if kind == "enum":
        return {
            "enum": draw(st.lists(st.sampled_from(BASE_VALUES), min_size=1, max_size=4, unique_by=json.dumps))
        }
    if kind == "const":
        return {"const": draw(st.sampled_from(BASE_VALUES))}
    if kind == "any":
        return {}
    if kind == "nothing":
        return {"not": {}}
    return {"type": kind}


def node(draw: st.DrawFn, depth: int) -> Schema:
    if depth >= 2:
        return leaf(draw)
    kind = draw(
        st.sampled_from(
            [
                "leaf",
                "leaf",
                "object",
                "object",
                "array",
                "anyOf",
                "oneOf",
                "allOf",
                "not",
                "ref",
                "id",
                "tagged",
            ]
        )
    )
    if kind == "leaf":
        return leaf(draw)
    if kind == "object":
        return object_node(draw, depth)
    if kind == "array":
        return array_node(draw, depth)
    if kind == "not":
        return {"not": leaf(draw)}
    if kind == "tagged":
        # oneOf alternatives told apart (or not) by a required field with a constant value.
        return {
            "oneOf": [
                {
                    "type": "object",
                    "properties": {"kind": {"const": draw(st.sampled_from(["x", "y", 1]))}, "a": leaf(draw)},
                    "required": draw(st.sampled_from([["kind"], ["a"], []])),
                }
                for _ in range(draw(st.integers(2, 3)))
            ]
        }
    if kind == "ref":
        s: Schema = {"$ref": REF}
        if draw(st.booleans()):
            s["unevaluatedProperties"] = draw(st.sampled_from([False, {"type": "integer"}]))
        return s
    if kind == "id":
        # A subschema with its own base URI: "#/$defs/d" inside resolves to ITS $defs.
        return {
            "$id": f"https://example.com/{draw(st.sampled_from(['p', 'q']))}",
            "$defs": {"d": leaf(draw)},
            "$ref": REF,
        }
    s = {kind: [node(draw, depth + 1) for _ in range(draw(st.integers(2, 3)))]}
    if draw(st.booleans()):
        s["unevaluatedProperties"] = draw(st.sampled_from([False, {"type": "integer"}]))
    if draw(st.integers(0, 3)) == 0:
        s["unevaluatedItems"] = False
    return s


def object_node(draw: st.DrawFn, depth: int) -> Schema:
    names = draw(st.lists(st.sampled_from(NAMES), max_size=3, unique=True))
    s: Schema = {"type": "object", "properties": {n: node(draw, depth + 1) for n in names}}
    if names and draw(st.booleans()):
        s["required"] = draw(st.lists(st.sampled_from(names), min_size=1, unique=True))
    closing = draw(st.sampled_from(["open", "additional", "unevaluated", "unevaluated-schema"]))
    if closing == "additional":
        s["additionalProperties"] = False
    elif closing == "unevaluated":
        s["unevaluatedProperties"] = False
    elif closing == "unevaluated-schema":
        s["unevaluatedProperties"] = {"type": "integer"}
    if draw(st.integers(0, 2)) == 0:
        trigger = draw(st.sampled_from(NAMES))
        s["dependentSchemas"] = {
            trigger: draw(
                st.sampled_from(
                    [
                        {"required": [n for n in NAMES if n != trigger][:1]},
                        {"properties": {n: {"type": "integer"} for n in NAMES if n != trigger}},
                    ]
                )
            )
        }
    if draw(st.integers(0, 3)) == 0:
        trigger = draw(st.sampled_from(NAMES))
        s["dependentRequired"] = {trigger: [n for n in NAMES if n != trigger][:1]}
    object_extras(draw, s)
    return s


def object_extras(draw: st.DrawFn, s: Schema) -> None:
    """patternProperties, propertyNames, min/maxProperties, additionalProperties as a schema and
    if/then/else, each now and then."""
    if draw(st.integers(0, 3)) == 0:
        s["patternProperties"] = {draw(st.sampled_from(PROPERTY_PATTERNS)): leaf(draw)}
    if draw(st.integers(0, 3)) == 0:
        s["propertyNames"] = draw(st.sampled_from(PROPERTY_NAMES))
    if draw(st.integers(0, 3)) == 0:
        s[draw(st.sampled_from(["minProperties", "maxProperties"]))] = draw(st.integers(0, 2))
    if "additionalProperties" not in s and draw(st.integers(0, 3)) == 0:
        s["additionalProperties"] = leaf(draw)
    if draw(st.integers(0, 4)) == 0:
        s["if"] = {"required": [draw(st.sampled_from(NAMES))]}
        s["then"] = {"properties": {draw(st.sampled_from(NAMES)): leaf(draw)}}
        if draw(st.booleans()):
            s["else"] = {"required": [draw(st.sampled_from(NAMES))]}


def array_node(draw: st.DrawFn, depth: int) -> Schema:
    s: Schema = {"type": "array"}
    prefix = draw(st.integers(0, 3))
    if prefix:
        s["prefixItems"] = [leaf(draw) for _ in range(prefix)]
    tail = draw(st.sampled_from(["none", "items", "items-false", "unevaluated", "unevaluated-schema"]))
    if tail == "items":
        s["items"] = node(draw, depth + 1)
    elif tail == "items-false":
        s["items"] = False
    elif tail == "unevaluated":
        s["unevaluatedItems"] = False
    elif tail == "unevaluated-schema":
        s["unevaluatedItems"] = {"type": "string"}
    if draw(st.integers(0, 3)) == 0:
        s["contains"] = {"type": "integer"}
    if draw(st.booleans()):
        s["maxItems"] = draw(st.integers(0, 3))
    return s


def _dict_nodes(schema: Any) -> list[Schema]:
    """Every dict schema inside `schema` (keywords' subschemas, not $defs names)."""
    found: list[Schema] = []
    if isinstance(schema, dict):
        found.append(schema)
        for key, value in schema.items():
            if key in ("properties", "patternProperties", "$defs", "dependentSchemas") and isinstance(
                value, dict
            ):
                for child in value.values():
                    found.extend(_dict_nodes(child))
            elif key in ("anyOf", "oneOf", "allOf", "prefixItems") and isinstance(value, list):
                for child in value:
                    found.extend(_dict_nodes(child))
            elif key in (
                "not",
                "items",
                "unevaluatedProperties",
                "unevaluatedItems",
                "contains",
                "additionalProperties",
                "propertyNames",
                "if",
                "then",
                "else",
            ):
                found.extend(_dict_nodes(value))
    return found


def mutate(draw: st.DrawFn, root: Schema) -> Schema:
    """One random edit somewhere in `root` (returns the new root)."""
    targets = _dict_nodes(root)
    target = draw(st.sampled_from(targets))
    op = draw(
        st.sampled_from(
            [
                "drop",
                "drop",
                "replace",
                "wrap-anyOf",
                "wrap-allOf",
                "number",
                "prefix",
                "property",
                "enum",
                "defs",
                "object",
            ]
        )
    )
    # $defs stay where they are: a $ref that resolves nowhere breaks the validator itself.
    keys = sorted(k for k in target if k not in ("$defs", "$id"))
    if op == "drop" and keys:
        del target[draw(st.sampled_from(keys))]
    elif op == "replace":
        for key in keys:
            del target[key]
        target.update(node(draw, 1))
    elif op in ("wrap-anyOf", "wrap-allOf"):
        inner = {k: target.pop(k) for k in keys}
        target[op[5:]] = [inner, node(draw, 2)]
    elif op == "number":
        key = draw(
            st.sampled_from(
                ["minimum", "maximum", "multipleOf", "maxLength", "minLength", "pattern", "maxItems"]
            )
        )
        if key == "multipleOf":
            target[key] = draw(st.sampled_from(MULTIPLES))
        elif key == "pattern":
            target[key] = draw(st.sampled_from(PATTERNS))
        else:
            target[key] = draw(st.integers(0, 3))
    elif op == "prefix" and isinstance(target.get("prefixItems"), list):
        items = target["prefixItems"]
        if items and draw(st.booleans()):
            items.pop()
        else:
            items.append(leaf(draw))
    elif op == "property" and isinstance(target.get("properties"), dict):
        props = target["properties"]
        name = draw(st.sampled_from(NAMES))
        if name in props:
            del props[name]
            if name in target.get("required", []):
                target["required"].remove(name)
                if not target["required"]:
                    del target["required"]
        else:
            props[name] = leaf(draw)
    elif op == "enum" and isinstance(target.get("enum"), list):
        values = target["enum"]
        extra = draw(st.sampled_from(BASE_VALUES))
        if len(values) > 1 and draw(st.booleans()):
            values.pop(draw(st.integers(0, len(values) - 1)))
        elif all(json.dumps(extra) != json.dumps(v) for v in values):
            values.append(extra)
    elif op == "defs":
        root["$defs"] = {"d": node(draw, 1)}
    elif op == "object":
        # An object keyword added, changed or dropped.
        key = draw(
            st.sampled_from(
                [
                    "patternProperties",
                    "propertyNames",
                    "minProperties",
                    "maxProperties",
                    "additionalProperties",
                    "if",
                ]
            )
        )
        if key in target and draw(st.booleans()):
            del target[key]
            if key == "if":
                target.pop("then", None)
                target.pop("else", None)
        else:
            group = ("if", "then", "else") if key == "if" else (key,)
            for k in group:
                target.pop(k, None)
            extras: Schema = {}
            while key not in extras:
                object_extras(draw, extras)
                if key == "additionalProperties" and key not in extras:
                    extras[key] = draw(st.sampled_from([False, True])) if draw(st.booleans()) else leaf(draw)
            target.update({k: v for k, v in extras.items() if k in group})
    return root


@st.composite
def schema_pairs(draw: st.DrawFn) -> tuple[Schema, Schema]:
    # Copies throughout: the grammar's draws may share objects with its constants (and with one
    # another), and a later edit in place must change neither another draw nor a constant (which
    # would make hypothesis draw differently for the same choices: FlakyStrategyDefinition).
    old = copy.deepcopy({**node(draw, 0), "$defs": {"d": node(draw, 1)}})
    new = copy.deepcopy(old)
    for _ in range(draw(st.sampled_from([1, 1, 1, 2]))):
        new = copy.deepcopy(mutate(draw, new))
    # A $ref inside the definition it names would loop for ever in the validator too.
    assume(all('"$ref"' not in json.dumps(s.get("$defs", {})) for s in (old, new)))
    return old, new


# ------------------------------------------------------------------------------- the search


def _constants(schema: Any, out: list[Any]) -> None:
    if isinstance(schema, dict):
        for key, value in schema.items():
            if key == "enum" and isinstance(value, list):
                out.extend(value)
            elif key == "const":
                out.append(value)
            elif key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum") and isinstance(
                value, int | float
            ):
                out.extend([value - 1, value, value + 0.5, value + 1])
            elif key == "multipleOf" and isinstance(value, int | float) and not isinstance(value, bool):
                out.extend(value * k for k in (1, 2, 3, 7))
            else:
                _constants(value, out)
    elif isinstance(schema, list):
        for value in schema:
            _constants(value, out)


def candidates(old: Any, new: Any) -> list[Any]:
    """Small instances likely to tell the two schemas apart: their constants, objects over the
    property names, arrays of up to four items."""
    found: list[Any] = []
    _constants([old, new], found)
    scalars: list[Any] = []
    seen: set[str] = set()
    for value in [*BASE_VALUES, *found]:
        text = json.dumps(value, sort_keys=True)
        if text not in seen:
            seen.add(text)
            scalars.append(value)
    small = [None, 1, 0.5, "a", True, 3, "x", "y"]
    # Strings of every length up to five, from the characters the patterns above use.
    scalars += [c * n for c in "ax1b" for n in range(6)] + ["ab", "abc", "12", "c", "xy"]
    out: list[Any] = list(scalars)
    out += [[], {}, [[]], [{}], {"a": {}}, {"a": []}]
    for size in range(1, 4):
        for names in itertools.combinations(NAMES, size):
            for values in itertools.product(small if size < 3 else small[:3], repeat=size):
                out.append(dict(zip(names, values, strict=True)))
    for size in range(1, 5):
        out += [list(values) for values in itertools.product(small if size < 3 else small[:3], repeat=size)]
    out += [[v] for v in scalars] + [{"a": v} for v in scalars] + [[1, 2, v] for v in scalars]
    # Names outside NAMES, for patternProperties, propertyNames and additionalProperties.
    out += [{n: v} for n in ("x", "xa", "ab", "") for v in small[:4]]
    out += [{"a": v, "x": w} for v in small[:3] for w in small[:3]]
    return out


def breaking_instance(smaller: Any, larger: Any) -> Any:
    """An instance valid under `smaller` and invalid under `larger`, or None ... as a 1-tuple
    so that a breaking `null` is told apart from none."""
    small_v, large_v = compiled_validator(smaller), compiled_validator(larger)
    for instance in candidates(smaller, larger):
        if small_v.is_valid(instance) and not large_v.is_valid(instance):
            return (instance,)
    return None


def _entry(old: Any, new: Any, rule: str, instance: Any) -> str:
    return json.dumps({"old": old, "new": new, "rule": rule, "instance": instance}, sort_keys=True)


def _examples_hold(findings: list[Any], smaller: Any, larger: Any, rule: str, old: Any, new: Any) -> None:
    """A value a refusal names must really be valid under the smaller schema (the old one, for
    input) and invalid under the larger: never one the old schema did not accept."""
    small_v, large_v = compiled_validator(smaller), compiled_validator(larger)
    for finding in findings:
        # A refusal names an example or claims a break only with a whole value showing it.
        if finding.example is None:
            assert "(e.g." not in finding.message and finding.message.startswith("cannot prove"), (
                f"UNCHECKED CLAIM in the {rule} refusal {finding.message!r}: old {json.dumps(old)} -> new "
                f"{json.dumps(new)}; no whole value shows the break"
            )
        if finding.example is not None:
            (value,) = finding.example
            assert small_v.is_valid(value) and not large_v.is_valid(value), (
                f"WRONG EXAMPLE in the {rule} refusal {finding.message!r}: old {json.dumps(old)} -> new "
                f"{json.dumps(new)}; {json.dumps(value)} does not show the break"
            )


def hunt(old: Any, new: Any, stats: Counter[str]) -> None:
    stats["pairs"] += 1
    try:
        input_findings = check_input_compat(old, new)
    except InvalidSchemaError:
        stats["invalid"] += 1  # the grammar made an invalid schema: a clear error, no verdict
        return
    _examples_hold(input_findings, old, new, "input", old, new)
    stats["examples"] += sum(1 for f in input_findings if f.example is not None)
    if not input_findings:
        stats["input compatible"] += 1
        found = breaking_instance(old, new)
        assert found is None, (
            f"UNSOUND input verdict: old {json.dumps(old)} -> new {json.dumps(new)} called compatible, "
            f"but old accepts and new rejects {json.dumps(found[0])}. Add to {CORPUS.name}: "
            + _entry(old, new, "input", found[0])
        )
    output_findings = check_output_compat(old, new)
    _examples_hold(output_findings, new, old, "output", old, new)
    if not output_findings:
        stats["output compatible"] += 1
        found = breaking_instance(new, old)
        assert found is None, (
            f"UNSOUND output verdict: old {json.dumps(old)} -> new {json.dumps(new)} called compatible, "
            f"but new may produce {json.dumps(found[0])}, which old rejects. Add to {CORPUS.name}: "
            + _entry(old, new, "output", found[0])
        )


# ------------------------------------------------------------------------------- the tests


def _corpus() -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = json.loads(CORPUS.read_text())
    return entries


@pytest.mark.parametrize("index", range(len(_corpus())))
def test_corpus_of_pairs_that_once_failed(index: int) -> None:
    entry = _corpus()[index]
    if entry["rule"] == "claims":
        # A refusal once claimed a break no whole value shows: every claim is checked again.
        hunt(entry["old"], entry["new"], Counter())
        return
    old, new, instance = entry["old"], entry["new"], entry["instance"]
    smaller, larger = (old, new) if entry["rule"] == "input" else (new, old)
    # The entry still shows a break for the validator; the checker must not call it compatible.
    assert compiled_validator(smaller).is_valid(instance) and not compiled_validator(larger).is_valid(
        instance
    )
    check = check_input_compat if entry["rule"] == "input" else check_output_compat
    assert check(old, new), f"corpus entry {index} ({entry.get('note', '')}) is called compatible again"
    hunt(old, new, Counter())


@sized("examples", short=150, soak=5000)
def test_no_breaking_instance_when_the_checker_says_compatible(examples: int) -> None:
    stats: Counter[str] = Counter()
    # The corpus first, whatever order the test runner picks for the tests above.
    for entry in _corpus():
        hunt(entry["old"], entry["new"], Counter())

    @settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(pair=schema_pairs())
    def run(pair: tuple[Schema, Schema]) -> None:
        hunt(*pair, stats)

    run()
    # The hunt only bites when the checker says "compatible": make sure it often does.
    assert stats["input compatible"] >= stats["pairs"] // 10, stats
    assert stats["output compatible"] >= stats["pairs"] // 10, stats
    assert stats["examples"], stats  # and refusals named examples, each one checked
