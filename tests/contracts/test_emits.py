"""A task contract's ``emits:``: read from the file (own team only, references to ``input`` and
``output`` only), and type-checked against the event contract it names (``check_emits``)."""

from __future__ import annotations

import textwrap

import pytest

from contracts.composition import check_emits
from contracts.errors import FileProblemsError
from contracts.loader import parse_contract_text
from contracts.model import Emits
from contracts.refs import EMITS_ROOTS, evaluate

CAPTURED = parse_contract_text(
    textwrap.dedent(
        """
        contract: payments/captured
        version: 1.0.0
        kind: event
        payload:
          type: object
          required: [order_id, payment_ref, amount_cents]
          properties:
            order_id: {type: string}
            payment_ref: {type: string}
            amount_cents: {type: integer}
            note: {type: string}
        """
    ),
    "captured.yaml",
)


def capture(payload: str, team: str = "payments", event: str = "payments/captured@1") -> str:
    return textwrap.dedent(
        f"""
        contract: {team}/capture
        version: 1.0.0
        input:
          type: object
          required: [order_id, amount_cents]
          properties: {{order_id: {{type: string}}, amount_cents: {{type: integer}}, note: {{type: string}}}}
        output:
          type: object
          required: [ref]
          properties: {{ref: {{type: string}}, fee: {{type: number}}}}
        emits:
          event: {event}
          payload: {payload}
        """
    )


GOOD = '{order_id: "${input.order_id}", payment_ref: "${output.ref}", amount_cents: "${input.amount_cents}"}'


def test_an_emits_mapping_is_read_and_fits_its_event() -> None:
    contract = parse_contract_text(capture(GOOD), "capture.yaml")
    assert contract.emits == Emits(
        event="payments/captured",
        major=1,
        payload={
            "order_id": "${input.order_id}",
            "payment_ref": "${output.ref}",
            "amount_cents": "${input.amount_cents}",
        },
    )
    assert check_emits(contract, CAPTURED) == []
    # At run time: the step's input and output.
    made = evaluate(
        contract.emits.payload,  # type: ignore[union-attr]
        {"input": {"order_id": "o-1", "amount_cents": 5}, "output": {"ref": "p-1"}},
        roots=EMITS_ROOTS,
    )
    assert made == {"order_id": "o-1", "payment_ref": "p-1", "amount_cents": 5}


@pytest.mark.parametrize(
    "payload, expected",
    [
        (
            '{order_id: "${input.order_id}", payment_ref: "${output.reff}", amount_cents: 1}',
            "emits.payload.payment_ref: reads ${output.reff}, but payments/capture@1.0.0's output does"
            " not declare 'reff' in output; did you mean 'ref'?",
        ),
        (
            '{order_id: "${input.order_id}", payment_ref: "${output.ref}", amount_cents: "${output.fee}"}',
            "emits.payload.amount_cents: reads ${output.fee}",
        ),
        (
            '{order_id: "${input.order_id}", payment_ref: "${input.note}", amount_cents: 1}',
            "reads ${input.note}, which may be absent",
        ),
        (
            '{order_id: "${input.order_id}", amount_cents: 1}',
            "required payload field(s) not supplied: payment_ref",
        ),
        (
            '{order_id: "${input.order_id}", payment_ref: "r", amount_cents: "cents"}',
            'the value "cents" does not fit',
        ),
    ],
)
def test_an_emits_mapping_that_does_not_fit_is_named_by_field(payload: str, expected: str) -> None:
    contract = parse_contract_text(capture(payload), "capture.yaml")
    messages = [f.message for f in check_emits(contract, CAPTURED) if f.breaking]
    assert any(expected in m for m in messages), messages
    assert all(m.startswith("payments/capture@1.0.0 emits payments/captured@1.0.0, ") for m in messages)


@pytest.mark.parametrize(
    "text, expected",
    [
        (capture(GOOD, event="crm/captured@1"), "emits.event: crm/captured@1 belongs to team crm"),
        (capture(GOOD, event="payments/captured@^1"), "emits.event"),
        (
            capture('{order_id: "${steps.a.output.x}"}'),
            "emits.payload.order_id: '${steps.a.output.x}' starts with 'steps'; a reference starts with one of input, output",
        ),
        (capture('"${output}"'), "emits.payload"),
    ],
)
def test_a_bad_emits_is_refused_when_the_file_is_read(text: str, expected: str) -> None:
    with pytest.raises(FileProblemsError) as refused:
        parse_contract_text(text, "capture.yaml")
    assert expected in str(refused.value), str(refused.value)


def test_an_event_contract_cannot_emit() -> None:
    text = textwrap.dedent(
        """
        contract: payments/captured
        version: 1.0.0
        kind: event
        payload: {type: object}
        emits: {event: payments/other@1, payload: {}}
        """
    )
    with pytest.raises(FileProblemsError, match="an event contract cannot emit events"):
        parse_contract_text(text, "captured.yaml")
