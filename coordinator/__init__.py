"""Accord coordinator."""
