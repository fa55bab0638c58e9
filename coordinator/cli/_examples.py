"""Examples shown at the end of every command's ``--help`` (tests/cli/test_help_text.py checks
that each command has some and that they name the command itself).

Kept in one table so the commands read the same way; a command's own docstring may also carry
an ``Examples:`` paragraph, and then nothing is added.
"""

from __future__ import annotations

EXAMPLES: dict[str, list[str]] = {
    "audit": ["accord audit --since 7d", "accord audit --team payments --json"],
    "demo": ["accord demo", "accord demo --keep-running"],
    "notices": ["accord notices", "accord notices --json"],
    "run": [
        "accord run shipping/order-to-cash -i @order.json --wait",
        'accord run shipping/order-to-cash@2 -i \'{"order_id": "o-1"}\'',
    ],
    "contract lint": ["accord contract lint contracts/*.yaml"],
    "contract diff": ["accord contract diff payments/charge-card@1.2.0 charge-card.yaml"],
    "contract register": [
        "accord contract register --dry-run contracts/charge-card.yaml",
        "accord contract register contracts/charge-card.yaml",
    ],
    "contract list": ["accord contract list", "accord contract list --team payments --all-versions"],
    "contract show": ["accord contract show payments/charge-card@1.2.0"],
    "contract deprecate": ["accord contract deprecate payments/charge-card@1 --sunset 2027-03-01"],
    "contract consumers": ["accord contract consumers payments/charge-card@1"],
    "contract retire": ["accord contract retire payments/charge-card@1"],
    "workflow check": ["accord workflow check order-to-cash.yaml --contracts contracts/"],
    "workflow register": [
        "accord workflow register --dry-run order-to-cash.yaml",
        "accord workflow register order-to-cash.yaml",
    ],
    "workflow validate": ["accord workflow validate order-to-cash.yaml"],
    "workflow list": ["accord workflow list", "accord workflow list --team shipping --json"],
    "workflow show": [
        "accord workflow show shipping/order-to-cash",
        "accord workflow show shipping/order-to-cash --version 2",
    ],
    "workflow disable": ["accord workflow disable shipping/order-to-cash"],
    "workflow enable": ["accord workflow enable shipping/order-to-cash"],
    "workflow delete": ["accord workflow delete shipping/order-to-cash@3"],
    "workflow rollback": ["accord workflow rollback shipping/order-to-cash --to 2"],
    "team create": ["accord team create payments > payments.token"],
    "team rotate-token": ["accord team rotate-token payments --grace 1h > payments.token"],
    "team list": ["accord team list"],
    "team token create": ["accord team token create ci --expires 90d > ci.token"],
    "team token list": ["accord team token list", "accord team token list --team payments --all"],
    "team token revoke": ["accord team token revoke ci"],
    "admin rotate-token": ["accord admin rotate-token"],
    "runs list": ["accord runs list", "accord runs list --workflow shipping/order-to-cash --status failed"],
    "runs show": ["accord runs show run-20261206-76ecea4d3405"],
    "runs cancel": ["accord runs cancel run-20261206-76ecea4d3405 --reason 'wrong amount'"],
    "runs trace": [
        "accord runs trace run-20261206-76ecea4d3405",
        "accord runs trace run-20261206-76ecea4d3405 --all-spans",
    ],
    "runs approve": ["accord runs approve run-20261206-76ecea4d3405 refund --comment 'ok'"],
    "runs reject": ["accord runs reject run-20261206-76ecea4d3405 refund --comment 'too high'"],
    "runs rerun": ["accord runs rerun run-20261206-76ecea4d3405"],
    "runs retry": [
        "accord runs retry run-20261206-76ecea4d3405",
        "accord runs retry run-20261206-76ecea4d3405 --from ship",
    ],
    "runs signal": ['accord runs signal run-20261206-76ecea4d3405 paid -d \'{"ref": "p-1"}\''],
    "schedule list": ["accord schedule list", "accord schedule list --workflow shipping/nightly"],
    "schedule pause": ["accord schedule pause shipping/nightly every-night"],
    "schedule resume": ["accord schedule resume shipping/nightly every-night"],
    "schedule trigger": ["accord schedule trigger shipping/nightly every-night"],
    "team limits": [
        "accord team limits payments --start-rate 600/m",
        "accord team limits payments --max-concurrency 20",
    ],
    "team show": ["accord team show payments"],
    "autonomy changes": ["accord autonomy changes", "accord autonomy changes --team payments --last 20"],
    "autonomy report": ["accord autonomy report", "accord autonomy report --since 12w --json"],
    "policy apply": ["accord policy apply --dry-run policies.yaml", "accord policy apply policies.yaml"],
    "policy list": ["accord policy list", "accord policy list --team payments"],
    "policy overrides": ["accord policy overrides --since 30d"],
    "policy show": ["accord policy show contracts-have-owners"],
    "coordinator start": [
        "accord coordinator start",
        "accord coordinator start --store postgresql://accord@db/accord",
    ],
    "agent start": ["accord agent start --config agent.yaml"],
    "event publish": ['accord event publish payments/order-paid@1 -p \'{"order_id": "o-1"}\''],
    "event list": ["accord event list", "accord event list --contract payments/order-paid"],
    "event show": ["accord event show evt-ec5cbb46218558d2"],
    "event tail": ["accord event tail", "accord event tail --contract payments/order-paid"],
}
