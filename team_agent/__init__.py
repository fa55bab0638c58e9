"""Accord team agent."""
