"""Warehouse team, on the ``shell`` engine: reserve stock.

Reads the task input as JSON on stdin and writes the output JSON on stdout, as any script would.
Run as ``python -m coordinator.demo.teams.warehouse``.
"""

from __future__ import annotations

import json
import sys


def main() -> None:
    request = json.load(sys.stdin)
    order_id = request["order_id"]
    items = [
        {"sku": "SKU-BOOK", "quantity": 1},
        {"sku": "SKU-MUG", "quantity": 2},
    ]
    print(f"reserved {len(items)} items for {order_id}", file=sys.stderr)
    json.dump({"reservation_id": f"res-{order_id}", "items": items}, sys.stdout)


if __name__ == "__main__":
    main()
