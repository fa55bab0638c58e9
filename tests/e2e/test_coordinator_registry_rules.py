"""Registry rules against the real coordinator: back-filled versions."""

from __future__ import annotations

import pytest

from contracts.errors import FailedPreconditionError
from tests.support.coordinator import CoordinatorProcess
from tests.support.scenario import contract


def _amount(version: str, minimum: int) -> str:
    return contract(
        "payments/charge",
        version,
        input_props=f"{{order_id: {{type: string}}, amount: {{type: integer, minimum: {minimum}}}}}",
    )


# ---------- back-fill: a version older than the newest of its major ----------


async def test_a_backfilled_version_between_two_compatible_ones_registers(
    coordinator: CoordinatorProcess,
) -> None:
    payments = await coordinator.create_team("payments")
    await coordinator.register_contract(payments, _amount("1.0.0", 10))
    await coordinator.register_contract(payments, _amount("1.2.0", 0))
    # 1.1.0 accepts more than 1.0.0 and less than 1.2.0: a safe successor of 1.0.0 and a safe
    # predecessor of 1.2.0, which is all a back-fill must be.
    response = await coordinator.register_contract(payments, _amount("1.1.0", 5))
    assert response.registered, list(response.findings)
    assert not [f for f in response.findings if f.breaking]
    assert any("older than the registered payments/charge@1.2.0" in w for w in response.warnings)


@pytest.mark.parametrize(
    ("minimum", "against"),
    [(20, "payments/charge@1.0.0"), (-5, "payments/charge@1.2.0")],
    ids=["narrower-than-the-older", "wider-than-the-newer"],
)
async def test_a_backfill_that_breaks_either_neighbour_is_refused(
    coordinator: CoordinatorProcess, minimum: int, against: str
) -> None:
    payments = await coordinator.create_team("payments")
    await coordinator.register_contract(payments, _amount("1.0.0", 10))
    await coordinator.register_contract(payments, _amount("1.2.0", 0))
    with pytest.raises(FailedPreconditionError) as refused:
        await coordinator.register_contract(payments, _amount("1.1.0", minimum))
    assert f"against {against}" in str(refused.value)
