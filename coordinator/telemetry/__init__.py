"""Tracing: span records, OTLP receiver, storage queries, forwarding, rendering."""
