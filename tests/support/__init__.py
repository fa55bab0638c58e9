"""Shared test helpers: the real coordinator as a subprocess, and a test agent."""
