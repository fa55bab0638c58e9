"""The composition checker: a workflow type-checks against its contracts, or every problem is
named with step, field and line; plus what it learns (pins, reads, order, sensitive inputs)."""

from __future__ import annotations

import textwrap
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from contracts.composition import (
    CompositionResult,
    ContractCatalog,
    PinnedCatalog,
    Read,
    check_workflow,
    consumer_impacts,
    emitted_sensitive,
    reads_of,
)
from contracts.errors import CompositionError, FileProblemsError
from contracts.loader import load_contract, load_contract_dir, load_workflow, parse_workflow_text
from contracts.model import Contract, Deprecation, Emits, RetryPolicy

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
ORDER_TO_CASH = (EXAMPLES / "workflows" / "order-to-cash.yaml").read_text()


@pytest.fixture(scope="module")
def catalog() -> ContractCatalog:
    contracts = [c for c in load_contract_dir(EXAMPLES / "contracts") if c.version != "1.3.0"]
    return ContractCatalog(contracts)


def check(text: str, catalog: ContractCatalog) -> CompositionResult:
    return check_workflow(parse_workflow_text(textwrap.dedent(text), "w.yaml"), catalog)


def breaking(result: CompositionResult) -> list[str]:
    return [f.message for f in result.findings if f.breaking]


def notes(result: CompositionResult) -> list[str]:
    return [f.message for f in result.findings if not f.breaking]


def test_order_to_cash_type_checks(catalog: ContractCatalog) -> None:
    result = check_workflow(load_workflow(EXAMPLES / "workflows" / "order-to-cash.yaml"), catalog)
    assert result.ok, result.findings
    assert breaking(result) == []
    # the workflow input does not promise amount_cents >= 1: allowed, validated when the step runs
    assert notes(result) == [
        "step 'charge', input.amount_cents (line 10): reads ${input.amount_cents}: input field 'amount_cents' "
        "may be integers below 1 (e.g. 0), which the target schema does not accept: lower bound is no bound here but "
        "minimum 1 in the target schema (allowed, but checked when the step runs)"
    ]
    assert {step: c.ref for step, c in result.pinned.items()} == {
        "charge": "payments/charge-card@1.2.0",
        "reserve": "warehouse/reserve-stock@2.0.0",
        "ship": "shipping/create-shipment@1.0.0",
        "notify": "crm/notify-customer@1.0.0",
    }
    assert result.dependencies == {
        "charge": set(),
        "reserve": set(),
        "ship": {"charge", "reserve"},
        "notify": {"ship", "reserve"},
    }
    assert result.order == ["charge", "reserve", "ship", "notify"]
    assert result.trigger_contracts[0].ref == "payments/order-paid@1.0.0"
    assert result.sensitive_inputs == set()


def test_reads_record_exactly_which_upstream_fields_are_used(catalog: ContractCatalog) -> None:
    result = check(ORDER_TO_CASH, catalog)
    summary = {
        (r.from_step, r.field, r.step, r.target, r.contract, r.version, r.major) for r in result.all_reads
    }
    assert summary == {
        (
            "charge",
            "output.payment_ref",
            "ship",
            "steps.ship.input.payment_ref",
            "payments/charge-card",
            "1.2.0",
            1,
        ),
        ("reserve", "output.items", "ship", "steps.ship.input.items", "warehouse/reserve-stock", "2.0.0", 2),
        ("reserve", "output.items", "notify", "steps.notify.for_each", "warehouse/reserve-stock", "2.0.0", 2),
        (
            "reserve",
            "output.items[*].sku",
            "notify",
            "steps.notify.input.sku",
            "warehouse/reserve-stock",
            "2.0.0",
            2,
        ),
        ("ship", "output.express", "notify", "steps.notify.when", "shipping/create-shipment", "1.0.0", 1),
        ("ship", "output.shipment_id", None, "output.shipment_id", "shipping/create-shipment", "1.0.0", 1),
    }
    assert set(result.reads) == {"charge", "reserve", "ship"}  # keyed by the step read from
    assert [r.field for r in reads_of(result.all_reads, "payments/charge-card", 1)] == ["output.payment_ref"]
    assert reads_of(result.all_reads, "payments/charge-card", 2) == []
    payment_ref = result.reads["charge"][0]
    assert payment_ref.target_schema == {"type": "string"}
    assert payment_ref.path == ("payment_ref",)


def test_unknown_contract_lists_registered_versions(catalog: ContractCatalog) -> None:
    result = check(ORDER_TO_CASH.replace("warehouse/reserve-stock@^2", "warehouse/reserve-stock@^1"), catalog)
    assert not result.ok
    assert breaking(result) == [
        "step 'reserve', contract (line 12): step 'reserve' calls warehouse/reserve-stock@^1 but no registered "
        "version matches ^1 (registered: 2.0.0)"
    ]
    assert "reserve" not in result.pinned
    assert result.findings[0].pointer == "/steps/reserve/contract"


def test_unknown_contract_name(catalog: ContractCatalog) -> None:
    result = check(ORDER_TO_CASH.replace("crm/notify-customer@^1", "crm/notify@^1"), catalog)
    assert breaking(result) == [
        "step 'notify', contract (line 23): step 'notify' calls crm/notify@^1 but no registered version "
        "matches ^1 (no version of crm/notify is registered; did you mean 'crm/notify-customer'?)"
    ]


def test_misspelled_contract_name_gets_did_you_mean(catalog: ContractCatalog) -> None:
    result = check(ORDER_TO_CASH.replace("payments/charge-card@^1", "payments/charge-crad@^1"), catalog)
    [message] = breaking(result)
    assert message.endswith(
        "(no version of payments/charge-crad is registered; did you mean 'payments/charge-card'?)"
    ), message
    far = check(ORDER_TO_CASH.replace("payments/charge-card@^1", "zzz/qqq@^1"), catalog)
    assert breaking(far)[0].endswith("(no version of zzz/qqq is registered)")


def test_plain_callable_resolver_works(catalog: ContractCatalog) -> None:
    def resolver(name: str, version_range: str) -> Contract | None:
        return None if name == "payments/charge-card" else catalog(name, version_range)

    result = check_workflow(parse_workflow_text(ORDER_TO_CASH, "w.yaml"), resolver)
    assert breaking(result)[0].endswith("calls payments/charge-card@^1 but no registered version matches ^1")


def test_reference_to_a_missing_field(catalog: ContractCatalog) -> None:
    result = check(ORDER_TO_CASH.replace("output.payment_ref}", "output.payment_reff}"), catalog)
    assert breaking(result) == [
        "step 'ship', input.payment_ref (line 18): reads ${steps.charge.output.payment_reff}, but "
        "payments/charge-card@1.2.0's output does not declare 'payment_reff' in steps.charge.output; "
        "did you mean 'payment_ref'?"
    ]
    assert [f.pointer for f in result.findings if f.breaking] == ["/steps/ship/input/payment_ref"]


def test_a_field_declared_by_anyof_alternatives_can_be_read() -> None:
    """A schema that is only ``anyOf``/``oneOf`` alternatives (here behind a ``$ref``) declares
    the fields its alternatives declare; one none declares is still refused, without a "did you
    mean" naming the very field."""
    output = {
        "$defs": {
            "card": {
                "type": "object",
                "properties": {"ref": {"type": "string"}, "last4": {"type": "string"}},
            },
            "iban": {"type": "object", "properties": {"ref": {"type": "string"}}},
            "shapes": {"oneOf": [{"$ref": "#/$defs/card"}, {"$ref": "#/$defs/iban"}]},
        },
        "$ref": "#/$defs/shapes",
    }
    payer = Contract("acme/pay", "1.0.0", {"type": "object"}, output)
    workflow = """
        workflow: acme/w
        input: {type: object}
        steps:
          pay: {contract: acme/pay@^1, input: {}}
        output: {ref: "${steps.pay.output.ref}", last4: "${steps.pay.output.last4}"}
    """
    assert breaking(check(workflow, ContractCatalog([payer]))) == []
    missing = breaking(check(workflow.replace("output.last4", "output.iban"), ContractCatalog([payer])))
    assert len(missing) == 1 and "does not declare 'iban'" in missing[0] and "did you mean" not in missing[0]


def test_reference_to_a_missing_workflow_input(catalog: ContractCatalog) -> None:
    result = check(
        ORDER_TO_CASH.replace('{order_id: "${input.order_id}"}', '{order_id: "${input.order}"}'), catalog
    )
    assert breaking(result) == [
        "step 'reserve', input.order_id (line 13): reads ${input.order}, but the workflow input schema does "
        "not declare 'order' in input; did you mean 'order_id'?"
    ]


def test_type_mismatch_between_output_and_input(catalog: ContractCatalog) -> None:
    result = check(
        ORDER_TO_CASH.replace(
            'payment_ref: "${steps.charge.output.payment_ref}"',
            'payment_ref: "${steps.reserve.output.items}"',
        ),
        catalog,
    )
    assert not result.ok
    (message,) = breaking(result)
    assert message.startswith(
        "step 'ship', input.payment_ref (line 18): reads ${steps.reserve.output.items}: "
    )
    assert "array" in message and "string" in message


def test_nested_item_fields_must_fit(catalog: ContractCatalog) -> None:
    sku_as_int = catalog.get("warehouse/reserve-stock", "2.0.0")
    assert sku_as_int is not None
    output = dict(sku_as_int.output_schema)
    output["$defs"] = {
        "item": {"type": "object", "required": ["sku"], "properties": {"sku": {"type": "integer"}}}
    }
    changed = ContractCatalog(
        [*catalog, Contract("warehouse/reserve-stock", "2.1.0", sku_as_int.input_schema, output)]
    )
    result = check(ORDER_TO_CASH, changed)
    messages = breaking(result)
    assert any(
        "step 'ship', input.items (line 19): reads ${steps.reserve.output.items}" in m and "sku" in m
        for m in messages
    )
    assert any("step 'notify', input.sku (line 26): reads ${item.sku}" in m for m in messages)


def test_constant_that_does_not_fit(catalog: ContractCatalog) -> None:
    result = check(ORDER_TO_CASH.replace('amount_cents: "${input.amount_cents}"', "amount_cents: 0"), catalog)
    assert breaking(result) == [
        "step 'charge', input.amount_cents (line 10): the value 0 does not fit: 0 is less than the minimum of 1"
    ]


def test_text_template_makes_a_string(catalog: ContractCatalog) -> None:
    result = check(
        ORDER_TO_CASH.replace(
            'amount_cents: "${input.amount_cents}"', 'amount_cents: "${input.amount_cents} cents"'
        ),
        catalog,
    )
    (message,) = breaking(result)
    assert message.startswith(
        "step 'charge', input.amount_cents (line 10): text with references makes a string: "
    )


def test_required_callee_input_not_supplied(catalog: ContractCatalog) -> None:
    result = check(ORDER_TO_CASH.replace('      items: "${steps.reserve.output.items}"\n', ""), catalog)
    assert breaking(result) == [
        "step 'ship', input (line 16): required steps.ship.input field(s) not supplied: items "
        "(shipping/create-shipment@1.0.0 requires order_id, payment_ref, items)"
    ]


def test_unknown_input_key_when_callee_is_closed(catalog: ContractCatalog) -> None:
    result = check(
        ORDER_TO_CASH.replace(
            '      order_id: "${input.order_id}"\n      payment_ref',
            '      order: "${input.order_id}"\n      order_id: x\n      payment_ref',
        ),
        catalog,
    )
    assert breaking(result) == [
        "step 'ship', input.order (line 17): steps.ship.input does not accept a field 'order'; did you mean 'order_id'?"
    ]


CYCLE = """\
workflow: shipping/cycle
input: {type: object, required: [id], properties: {id: {type: string}}}
steps:
  charge:
    contract: payments/charge-card@^1
    input: {order_id: "${steps.ship.output.shipment_id}", amount_cents: 1}
  reserve:
    contract: warehouse/reserve-stock@^2
    input: {order_id: "${input.id}"}
  ship:
    contract: shipping/create-shipment@^1
    input:
      order_id: "${input.id}"
      payment_ref: "${steps.charge.output.payment_ref}"
      items: "${steps.reserve.output.items}"
"""


def test_cycle_is_named(catalog: ContractCatalog) -> None:
    result = check(CYCLE, catalog)
    assert breaking(result) == ["step 'charge' (line 4): steps form a cycle: charge → ship → charge"]
    assert result.order == ["reserve"]


def test_self_reference(catalog: ContractCatalog) -> None:
    result = check(CYCLE.replace("steps.ship.output.shipment_id", "steps.charge.output.payment_ref"), catalog)
    assert breaking(result) == ["step 'charge' (line 4): step 'charge' reads its own output"]


def test_unknown_step(catalog: ContractCatalog) -> None:
    result = check(
        ORDER_TO_CASH.replace("steps.charge.output.payment_ref", "steps.chrage.output.payment_ref"), catalog
    )
    assert breaking(result) == [
        "step 'ship', input.payment_ref (line 18): reads ${steps.chrage.output.payment_ref} but there is no "
        "step 'chrage'; did you mean 'charge'?"
    ]


def test_only_a_steps_output_is_readable(catalog: ContractCatalog) -> None:
    result = check(
        ORDER_TO_CASH.replace("steps.charge.output.payment_ref", "steps.charge.payment_ref"), catalog
    )
    assert breaking(result) == [
        "step 'ship', input.payment_ref (line 18): reads ${steps.charge.payment_ref}; only a step's output is "
        "readable: ${steps.charge.output...}"
    ]


def test_for_each_over_a_non_array(catalog: ContractCatalog) -> None:
    result = check(
        ORDER_TO_CASH.replace(
            'for_each: "${steps.reserve.output.items}"', 'for_each: "${steps.reserve.output.reservation_id}"'
        ),
        catalog,
    )
    assert breaking(result) == [
        "step 'notify', for_each (line 25): for_each needs an array, but ${steps.reserve.output.reservation_id} "
        "is a string, not an array"
    ]


def test_item_outside_for_each(catalog: ContractCatalog) -> None:
    result = check(
        ORDER_TO_CASH.replace('{order_id: "${input.order_id}"}', '{order_id: "${item.sku}"}'), catalog
    )
    (message,) = breaking(result)
    assert message.startswith(
        "step 'reserve', input.order_id (line 13): reads ${item.sku}: ${item} exists only in"
    )


def test_when_references_are_checked(catalog: ContractCatalog) -> None:
    result = check(ORDER_TO_CASH.replace("output.express}", "output.expres}"), catalog)
    assert breaking(result) == [
        "step 'notify', when (line 24): reads ${steps.ship.output.expres}, but shipping/create-shipment@1.0.0's "
        "output does not declare 'expres' in steps.ship.output; did you mean 'express'?"
    ]


def test_output_of_a_conditional_step_may_be_absent(catalog: ContractCatalog) -> None:
    result = check(
        ORDER_TO_CASH.replace(
            'shipment_id: "${steps.ship.output.shipment_id}"',
            'shipment_id: "${steps.ship.output.shipment_id}"\n  notified: "${steps.notify.output}"',
        ),
        catalog,
    )
    assert result.ok
    assert (
        "workflow output.notified (line 29): reads ${steps.notify.output}, but step 'notify' may be skipped (when), so its output may be absent"
        in notes(result)
    )


def test_output_mapping_references_resolve(catalog: ContractCatalog) -> None:
    result = check(
        ORDER_TO_CASH.replace("steps.ship.output.shipment_id}", "steps.ship.output.shipment}"), catalog
    )
    assert breaking(result) == [
        "workflow output.shipment_id (line 28): reads ${steps.ship.output.shipment}, but "
        "shipping/create-shipment@1.0.0's output does not declare 'shipment' in steps.ship.output; "
        "did you mean 'shipment_id'?"
    ]


def test_for_each_step_output_is_an_array_of_outputs(catalog: ContractCatalog) -> None:
    result = check(
        ORDER_TO_CASH.replace(
            'shipment_id: "${steps.ship.output.shipment_id}"',
            'first: "${steps.notify.output[0].notification_id}"',
        ),
        catalog,
    )
    assert breaking(result) == []


def test_trigger_event_fields_must_exist_and_fit(catalog: ContractCatalog) -> None:
    result = check(
        ORDER_TO_CASH.replace('amount_cents: "${event.amount_cents}"', 'amount_cents: "${event.amount}"'),
        catalog,
    )
    assert breaking(result) == [
        "trigger 1 on payments/order-paid, input.amount_cents (line 31): reads ${event.amount}, but the event "
        "payload does not declare 'amount' in event; did you mean 'amount_cents'?"
    ]
    result = check(
        ORDER_TO_CASH.replace('amount_cents: "${event.amount_cents}"', 'amount_cents: "${event.paid_at}"'),
        catalog,
    )
    messages = breaking(result)
    assert any(
        m.startswith(
            "trigger 1 on payments/order-paid, input.amount_cents (line 31): reads ${event.paid_at}: "
        )
        for m in messages
    ), messages
    result = check(ORDER_TO_CASH.replace(', amount_cents: "${event.amount_cents}"}', "}"), catalog)
    assert breaking(result) == [
        "trigger 1 on payments/order-paid, input (line 31): required input field(s) not supplied: amount_cents"
    ]


def test_trigger_refs_only_event(catalog: ContractCatalog) -> None:
    result = check(
        ORDER_TO_CASH.replace('order_id: "${event.order_id}"', 'order_id: "${input.order_id}"'), catalog
    )
    (message,) = breaking(result)
    assert "reads ${input.order_id}: input is not available here; here you may use ${event...}" in message


def test_trigger_needs_an_event_contract(catalog: ContractCatalog) -> None:
    result = check(
        ORDER_TO_CASH.replace("on: payments/order-paid@^1", "on: payments/charge-card@^1"), catalog
    )
    assert breaking(result) == [
        "trigger 1 on payments/charge-card, on (line 30): payments/charge-card@1.2.0 is a task contract; "
        "a trigger needs an event contract (kind: event)"
    ]
    result = check(ORDER_TO_CASH.replace("on: payments/order-paid@^1", "on: payments/order-paid@^2"), catalog)
    assert breaking(result) == [
        "trigger 1 on payments/order-paid, on (line 30): triggers on payments/order-paid@^2 but no registered "
        "version matches (registered: 1.0.0)"
    ]


def _with(catalog: ContractCatalog, ref: str, **changes: Any) -> ContractCatalog:
    from dataclasses import replace

    name, version = ref.split("@")
    original = catalog.get(name, version)
    assert original is not None
    return ContractCatalog([*(c for c in catalog if c.ref != ref), replace(original, **changes)])


def test_team_visibility(catalog: ContractCatalog) -> None:
    result = check(ORDER_TO_CASH, _with(catalog, "payments/charge-card@1.2.0", visibility="team"))
    assert breaking(result) == [
        "step 'charge', contract (line 9): payments/charge-card@1.2.0 has visibility 'team': only team payments "
        "may call it, and this workflow belongs to shipping"
    ]


def test_deprecated_contract_is_a_note(catalog: ContractCatalog) -> None:
    deprecated = Deprecation(sunset="2027-03-01", replacement="payments/charge-card@2")
    result = check(ORDER_TO_CASH, _with(catalog, "payments/charge-card@1.2.0", deprecated=deprecated))
    assert result.ok
    assert (
        "step 'charge', contract (line 9): payments/charge-card@1.2.0 is deprecated (sunset 2027-03-01); "
        "use payments/charge-card@2" in notes(result)
    )


def test_retry_override_within_what_the_contract_allows(catalog: ContractCatalog) -> None:
    result = check(
        ORDER_TO_CASH, _with(catalog, "shipping/create-shipment@1.0.0", retry=RetryPolicy(max_attempts=3))
    )
    assert breaking(result) == [
        "step 'ship', retry.max_attempts (line 20): asks for 5 attempts but shipping/create-shipment@1.0.0 "
        "allows at most 3"
    ]


SENSITIVE = """\
workflow: shipping/pay
input:
  type: object
  properties:
    order_id: {type: string}
    card: {type: string}
    payment: {type: object, properties: {token: {type: string}, amount: {type: integer}}}
steps:
  charge:
    contract: payments/charge-card@^1
    input: {order_id: "${input.order_id}", amount_cents: 5, card_token: "${input.card}"}
  again:
    contract: payments/charge-card@^1
    input: {order_id: "${input.order_id}", amount_cents: "${input.payment.amount}", card_token: "card ${input.payment.token}"}
"""


def test_workflow_inputs_flowing_into_sensitive_fields_are_sensitive(catalog: ContractCatalog) -> None:
    result = check(SENSITIVE, catalog)
    assert result.sensitive_inputs == {"input.card", "input.payment.token"}


def test_sensitive_nested_below_the_target() -> None:
    nested = Contract(
        "vault/store",
        "1.0.0",
        {
            "type": "object",
            "properties": {"secret": {"type": "object", "properties": {"pin": {"type": "string"}}}},
        },
        {},
        sensitive=("input.secret.pin",),
    )
    text = """\
workflow: vault/w
input: {type: object, properties: {creds: {type: object, properties: {pin: {type: string}}}}}
steps:
  store: {contract: vault/store@^1, input: {secret: "${input.creds}"}}
"""
    result = check_workflow(parse_workflow_text(text, "w.yaml"), ContractCatalog([nested]))
    assert result.ok, result.findings
    assert result.sensitive_inputs == {"input.creds.pin"}


ISSUER = Contract(
    "vault/issue",
    "1.0.0",
    {"type": "object"},
    {
        "type": "object",
        "required": ["card_token", "cards", "amount"],
        "properties": {
            "card_token": {"type": "string"},
            "cards": {"type": "array", "items": {"type": "string"}},
            "amount": {"type": "integer"},
        },
    },
    sensitive=("output.card_token", "output.cards"),
)
CHARGE = Contract(
    "shop/charge",
    "1.0.0",
    {"type": "object", "properties": {"token": {"type": "string"}, "note": {"type": "string"}, "n": {}}},
    {"type": "object"},
)
LABEL = Contract(
    "shop/label", "1.0.0", {"type": "object", "properties": {"card": {"type": "string"}}}, {"type": "object"}
)
TAINT = """\
workflow: shop/flow
input: {type: object, required: [order_id], properties: {order_id: {type: string}}}
steps:
  issue: {contract: vault/issue@^1, input: {order_id: "${input.order_id}"}}
  charge:
    contract: shop/charge@^1
    input: {token: "${steps.issue.output.card_token}", note: "card ${steps.issue.output.card_token}", n: "${steps.issue.output.amount}"}
  label: {contract: shop/label@^1, for_each: "${steps.issue.output.cards}", input: {card: "${item}"}}
  whole: {contract: shop/charge@^1, input: {n: "${steps.issue.output}"}}
output:
  token: "${steps.issue.output.card_token}"
  note: "card ${steps.issue.output.card_token}"
  order: "${input.order_id}"
  amount: "${steps.issue.output.amount}"
"""


def test_sensitive_outputs_taint_what_they_flow_into() -> None:
    result = check_workflow(parse_workflow_text(TAINT, "w.yaml"), ContractCatalog([ISSUER, CHARGE, LABEL]))
    assert result.ok, result.findings
    assert result.sensitive_flows == {
        "steps.charge.input.token",  # a mapping
        "steps.charge.input.note",  # text around a reference
        "steps.label.input.card",  # a for_each item of a sensitive array
        "steps.label.for_each",  # the array itself, the for_each step's own input
        "steps.whole.input.n.card_token",  # the whole output: the sensitive parts below it
        "steps.whole.input.n.cards",
        "output.token",  # the run output
        "output.note",
    }


def test_a_sensitive_event_field_taints_the_run_input_and_what_it_flows_into() -> None:
    paid = Contract(
        "vault/card-issued",
        "1.0.0",
        {"type": "object", "required": ["card"], "properties": {"card": {"type": "string"}}},
        {},
        sensitive=("input.card",),
        kind="event",
    )
    text = """\
workflow: shop/on-card
input: {type: object, required: [card, order], properties: {card: {type: string}, order: {type: string}}}
steps:
  charge: {contract: shop/charge@^1, input: {note: "card ${input.card}", n: "${input.order}"}}
triggers:
  - on: vault/card-issued@^1
    input: {card: "${event.card}", order: "o-1"}
"""
    result = check_workflow(parse_workflow_text(text, "w.yaml"), ContractCatalog([paid, CHARGE]))
    assert result.ok, result.findings
    assert result.sensitive_flows == {"input.card", "steps.charge.input.note"}


def test_an_events_extra_sensitive_fields_taint_the_run_like_its_own() -> None:
    # The event contract marks nothing; its emitter filled `card` from a sensitive value.
    issued = Contract(
        "vault/card-issued",
        "1.0.0",
        {"type": "object", "required": ["card"], "properties": {"card": {"type": "string"}}},
        {},
        kind="event",
    )
    text = """\
workflow: shop/on-card
input: {type: object, required: [card], properties: {card: {type: string}}}
steps:
  charge: {contract: shop/charge@^1, input: {note: "card ${input.card}"}}
output: {card: "${input.card}"}
triggers:
  - on: vault/card-issued@^1
    input: {card: "${event.card}"}
"""
    spec = parse_workflow_text(text, "w.yaml")
    catalog = ContractCatalog([issued, CHARGE])
    assert check_workflow(spec, catalog).sensitive_flows == set()
    result = check_workflow(spec, catalog, {"vault/card-issued": ["input.card"]})
    assert result.sensitive_flows == {"input.card", "steps.charge.input.note", "output.card"}


def test_a_pinned_catalog_answers_the_version_a_run_pinned() -> None:
    # Registered against 1.0.0 (nothing sensitive); the run pinned 1.1.0, which marks the card.
    unmarked = Contract("vault/issue", "1.0.0", ISSUER.input_schema, ISSUER.output_schema)
    newer = Contract(
        "vault/issue", "1.1.0", ISSUER.input_schema, ISSUER.output_schema, sensitive=("output.card_token",)
    )
    spec = parse_workflow_text(TAINT, "w.yaml")
    at_registration = check_workflow(spec, ContractCatalog([unmarked, CHARGE, LABEL]))
    assert at_registration.sensitive_flows == set()
    pinned = PinnedCatalog([unmarked, CHARGE, LABEL], {"vault/issue": newer})
    assert pinned("vault/issue", "^1") is newer and pinned("vault/issue", "^2") is newer
    assert pinned("shop/charge", "^1") is CHARGE
    flows = check_workflow(spec, pinned).sensitive_flows
    assert {"steps.charge.input.token", "steps.charge.input.note", "output.token", "output.note"} <= flows


def test_emitted_sensitive_follows_sensitive_fields_and_taint_into_the_payload() -> None:
    emitter = Contract(
        "vault/issue",
        "1.0.0",
        {"type": "object", "properties": {"order": {"type": "string"}, "holder": {"type": "object"}}},
        {"type": "object", "properties": {"card": {"type": "object"}}},
        sensitive=("output.card.number",),
        emits=Emits(
            "vault/card-issued",
            1,
            {
                "card": "${output.card}",
                "note": "card ${output.card.number}",
                "order": "${input.order}",
                "who": {"name": "${input.holder}"},
            },
        ),
    )
    # The emitter's own sensitive field: where it lands, and below a parent mapped whole.
    assert emitted_sensitive(emitter) == ["input.card.number", "input.note"]
    # Its input's taint in a run (the run's flows into the step's input).
    assert emitted_sensitive(emitter, ["input.order", "input.holder.iban"]) == [
        "input.card.number",
        "input.note",
        "input.order",
        "input.who.name.iban",
    ]
    assert emitted_sensitive(replace(emitter, sensitive=())) == []
    assert emitted_sensitive(replace(emitter, emits=None), ["input.order"]) == []


def test_a_workflow_marks_its_own_inputs_sensitive() -> None:
    text = """\
workflow: shop/own
input: {type: object, required: [pin, order], properties: {pin: {type: string}, order: {type: string}}}
sensitive: [input.pin]
steps:
  charge: {contract: shop/charge@^1, input: {note: "pin ${input.pin}", n: "${input.order}"}}
output: {pin: "${input.pin}", order: "${input.order}"}
"""
    result = check_workflow(parse_workflow_text(text, "w.yaml"), ContractCatalog([CHARGE]))
    assert result.ok, result.findings
    assert result.sensitive_flows == {"input.pin", "steps.charge.input.note", "output.pin"}


def test_a_workflow_sensitive_path_must_exist_in_its_input() -> None:
    text = """\
workflow: shop/own
input: {type: object, properties: {pin: {type: string}}}
sensitive: [input.pni, card]
steps:
  charge: {contract: shop/charge@^1, input: {note: "x"}}
"""
    with pytest.raises(FileProblemsError) as raised:
        parse_workflow_text(text, "w.yaml")
    message = str(raised.value)
    assert "sensitive path 'input.pni' does not exist in the input schema; input has: pin" in message
    assert "sensitive[1]" in message


def test_sensitive_workflow_inputs_are_flows_too(catalog: ContractCatalog) -> None:
    result = check(SENSITIVE, catalog)
    assert result.sensitive_flows == {"steps.charge.input.card_token", "steps.again.input.card_token"}


def test_raise_for_findings(catalog: ContractCatalog) -> None:
    check(ORDER_TO_CASH, catalog).raise_for_findings()
    with pytest.raises(CompositionError, match="does not type-check"):
        check(CYCLE, catalog).raise_for_findings()


def test_line_of_finding(catalog: ContractCatalog) -> None:
    result = check(ORDER_TO_CASH.replace("output.payment_ref}", "output.x}"), catalog)
    (finding,) = (f for f in result.findings if f.breaking)
    assert result.line_of(finding) == 18


# -- consumers of a contract change ---------------------------------------------------------


def test_consumer_impacts_of_a_breaking_successor(catalog: ContractCatalog) -> None:
    reads = check(ORDER_TO_CASH, catalog).all_reads
    successor = load_contract(EXAMPLES / "contracts" / "breaking" / "charge-card-1.3.0.yaml")
    impacts = consumer_impacts(successor, reads)
    assert [str(i) for i in impacts] == [
        "workflow shipping/order-to-cash (step 'ship', steps.ship.input.payment_ref) reads output.payment_ref: "
        "payments/charge-card@1.3.0 no longer declares 'payment_ref' in its output"
    ]
    assert impacts[0].team == "shipping"
    assert impacts[0].breaking


def test_consumer_impacts_of_a_compatible_version(catalog: ContractCatalog) -> None:
    reads = check(ORDER_TO_CASH, catalog).all_reads
    current = catalog.get("warehouse/reserve-stock", "2.0.0")
    assert current is not None
    from dataclasses import replace

    assert consumer_impacts(replace(current, version="2.1.0"), reads) == []
    # another major is not this workflow's concern: it stays pinned to ^2
    assert consumer_impacts(replace(current, version="3.0.0", output_schema={}), reads) == []


def test_consumer_impacts_of_optional_field(catalog: ContractCatalog) -> None:
    reads = check(ORDER_TO_CASH, catalog).all_reads
    current = catalog.get("shipping/create-shipment", "1.0.0")
    assert current is not None
    from dataclasses import replace

    output = {
        "type": "object",
        "required": ["express"],
        "properties": {"shipment_id": {"type": "integer"}, "express": {"type": "boolean"}},
    }
    impacts = consumer_impacts(replace(current, version="1.1.0", output_schema=output), reads)
    # the output mapping has no declared type, so only presence matters to it
    assert [(i.read.target, i.message) for i in impacts] == [
        ("output.shipment_id", "shipping/create-shipment@1.1.0 no longer promises it is present")
    ]


def test_consumer_impacts_of_type_change(catalog: ContractCatalog) -> None:
    reads = check(ORDER_TO_CASH, catalog).all_reads
    current = catalog.get("warehouse/reserve-stock", "2.0.0")
    assert current is not None
    from dataclasses import replace

    output = dict(current.output_schema)
    output["$defs"] = {
        "item": {"type": "object", "required": ["sku"], "properties": {"sku": {"type": "integer"}}}
    }
    impacts = consumer_impacts(replace(current, version="2.1.0", output_schema=output), reads)
    assert {(i.read.target, i.read.field) for i in impacts} == {
        ("steps.ship.input.items", "output.items"),
        ("steps.notify.input.sku", "output.items[*].sku"),
    }
    assert all(i.breaking and "integer" in i.message for i in impacts)


def test_read_field_path_parses() -> None:
    read = Read("a/w", "s", "steps.s.input.x", "u", "a/c", "1.0.0", 1, "output.items[*].sku")
    assert read.path == ("items", "*", "sku")


def test_catalog() -> None:
    one = Contract("a/b", "1.0.0", {}, {})
    two = Contract("a/b", "1.10.0", {}, {})
    catalog = ContractCatalog([two, one])
    assert catalog.versions("a/b") == ["1.0.0", "1.10.0"]
    assert catalog("a/b", "^1") is two
    assert catalog("a/b", "~1.0") is one
    assert catalog("a/c", "^1") is None
    assert len(catalog) == 2


def test_an_optional_field_cannot_feed_a_required_one(catalog: ContractCatalog) -> None:
    """Registered workflows must not fail at run time because an optional value is absent."""
    optional_order = ORDER_TO_CASH.replace("required: [order_id, amount_cents]", "required: [amount_cents]")
    messages = breaking(check(optional_order, catalog))
    assert messages and all("reads ${input.order_id}, which may be absent" in m for m in messages), messages
    assert any("steps.charge.input.order_id is required" in m for m in messages)


def test_an_optional_field_may_feed_an_optional_one(catalog: ContractCatalog) -> None:
    with_card = ORDER_TO_CASH.replace(
        "properties: {order_id: {type: string}, amount_cents: {type: integer}}",
        "properties: {order_id: {type: string}, amount_cents: {type: integer}, card: {type: string}}",
    ).replace(
        'input: {order_id: "${input.order_id}", amount_cents: "${input.amount_cents}"}',
        'input: {order_id: "${input.order_id}", amount_cents: "${input.amount_cents}", card_token: "${input.card}"}',
    )
    assert "card_token" in with_card
    assert breaking(check(with_card, catalog)) == []
