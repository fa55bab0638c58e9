"""Create the payments team's Step Functions side of payments/charge-card@1: the SQS queue the
worker reads and the ``charge-card`` state machine (state-machine.asl.json, with the queue's URL
put in). Prints the state machine's ARN, for the agent's ``state_machine_arn``.

    python examples/stepfunctions-team/deploy.py --role-arn arn:aws:iam::123456789012:role/charge-card

The role must let Step Functions send to the queue (sqs:SendMessage). Uses the standard AWS
configuration (AWS_DEFAULT_REGION, credentials, AWS_ENDPOINT_URL for a local emulator). In production
you would rather deploy the same definition with CloudFormation / CDK / Terraform
(DefinitionSubstitutions: ChargeQueueUrl).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

DEFINITION = Path(__file__).resolve().parent / "state-machine.asl.json"


def deploy(sfn: Any, sqs: Any, role_arn: str, name: str = "charge-card") -> tuple[str, str]:
    """Create the queue and the state machine (or update its definition); (ARN, queue URL)."""
    queue_url = sqs.create_queue(QueueName=f"{name}-work")["QueueUrl"]
    definition = DEFINITION.read_text().replace("${ChargeQueueUrl}", queue_url)
    json.loads(definition)  # still JSON
    for machine in sfn.get_paginator("list_state_machines").paginate().search("stateMachines[]"):
        if machine["name"] == name:
            sfn.update_state_machine(stateMachineArn=machine["stateMachineArn"], definition=definition)
            return machine["stateMachineArn"], queue_url
    created = sfn.create_state_machine(name=name, definition=definition, roleArn=role_arn, type="STANDARD")
    return created["stateMachineArn"], queue_url


def main() -> None:
    import boto3

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--role-arn", required=True, help="the state machine's execution role")
    parser.add_argument("--name", default="charge-card")
    args = parser.parse_args()
    arn, queue_url = deploy(boto3.client("stepfunctions"), boto3.client("sqs"), args.role_arn, args.name)
    print(f"state_machine_arn: {arn}\nqueue_url: {queue_url}")


if __name__ == "__main__":
    main()
