"""Deprecation dates, the same for the registry (which sets them) and the engine (which enforces
them): a sunset is a day in UTC; a sunset of D lets new runs start through D and refuses them
from D+1 unless the caller overrides (docs/contracts.md, "Deprecation")."""

from __future__ import annotations

import datetime

from contracts.model import Contract, Deprecation

# The rules a run may override, each with a reason that is recorded (docs/workflows.md,
# "Overrides"). The governance rules of a later release use the same form.
OVERRIDABLE = ("sunset",)
MAX_OVERRIDE_REASON = 500


def today_utc() -> datetime.date:
    return datetime.datetime.now(datetime.UTC).date()


def sunset_passed(deprecation: Deprecation, today: datetime.date) -> bool:
    try:
        return datetime.date.fromisoformat(deprecation.sunset) < today
    except ValueError:
        return False  # stored before dates were checked: no date to enforce


def deprecation_warning(contract: Contract) -> str:
    """The line a run that pins a deprecated version carries."""
    assert contract.deprecated is not None
    text = f"{contract.ref} is deprecated: sunset {contract.deprecated.sunset}"
    if contract.deprecated.replacement:
        text += f", replacement {contract.deprecated.replacement}"
    return text
