"""Run the payments team's Temporal worker (``ChargeCard`` on task queue ``payments``).

    pip install 'temporalio[opentelemetry]'
    temporal server start-dev                      # or your cluster
    python examples/temporal-team/worker.py --target-host 127.0.0.1:7233

The worker has Temporal's ``TracingInterceptor``: the workflow's spans continue the trace the
Accord agent passed in the workflow's headers, and go wherever this process's OpenTelemetry
tracer provider sends them (configure one to see them; docs/engines/temporal.md, "Tracing").
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from temporalio.client import Client
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.worker import Worker

sys.path.insert(0, str(Path(__file__).resolve().parent))

from payments_workflows import TASK_QUEUE, ChargeCard, charge_card


async def main(target_host: str, namespace: str) -> None:
    client = await Client.connect(target_host, namespace=namespace, interceptors=[TracingInterceptor()])
    worker = Worker(client, task_queue=TASK_QUEUE, workflows=[ChargeCard], activities=[charge_card])
    print(f"worker on {target_host}, namespace {namespace}, task queue {TASK_QUEUE}", flush=True)
    await worker.run()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target-host", default="127.0.0.1:7233")
    parser.add_argument("--namespace", default="default")
    args = parser.parse_args()
    try:
        asyncio.run(main(args.target_host, args.namespace))
    except KeyboardInterrupt:
        pass
