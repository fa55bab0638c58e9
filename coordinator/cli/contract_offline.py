"""Offline contract and workflow commands: lint, diff, check (no coordinator needed)."""

from __future__ import annotations

from coordinator.cli._apps import contract_app, workflow_app  # noqa: F401
