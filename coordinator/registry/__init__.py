"""Contracts and workflows: registration with compatibility and composition checks."""

from coordinator.registry.policies import Policies
from coordinator.registry.registry import (
    ConsumerImpact,
    ContractRegistration,
    Finding,
    Notice,
    Registry,
    WorkflowRegistration,
    agent_policy_document,
)

__all__ = [
    "ConsumerImpact",
    "ContractRegistration",
    "Finding",
    "Notice",
    "Policies",
    "Registry",
    "WorkflowRegistration",
    "agent_policy_document",
]
