"""Peer side of the Accord benchmark suite (issue 8, point 4).

The same three-step chain is run on Temporal, Prefect 3 and Airflow 3, each in
its own virtual environment under ``benchmarks/.envs/<peer>`` so that their
dependency pins never touch Accord's own ``.venv``.  Entry point:
``python -m benchmarks.peers.run_peers`` or ``benchmarks.peers.run_peers.run()``.
"""
