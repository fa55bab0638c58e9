"""Contracts and workflows: registration with compatibility and composition checks."""

from coordinator.registry.registry import (
    ConsumerImpact,
    ContractRegistration,
    Finding,
    Notice,
    Registry,
    WorkflowRegistration,
)

__all__ = ["ConsumerImpact", "ContractRegistration", "Finding", "Notice", "Registry", "WorkflowRegistration"]
