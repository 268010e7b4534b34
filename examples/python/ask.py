#!/usr/bin/env python3
"""Files an action for approval and waits for the decision.

    COUNTERSIGN_URL=http://localhost:8080 COUNTERSIGN_TOKEN=cs_... \\
        python3 ask.py [--timeout SECONDS] [--key KEY] < action.json

Prints the approval's id as soon as it is filed, then the decided Approval
as JSON. Exits 0 approved (execute outcome.params), 1 refused (rejected,
changes requested, cancelled, failed), 3 still pending at the timeout,
2 on a usage or API error.
"""

import argparse
import json
import os
import sys
import uuid

from countersign import APIError, Client, APPROVED, PENDING


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--timeout", type=float, default=300, help="seconds to wait for a decision")
    p.add_argument("--key", default="", help="idempotency key (default: a new one)")
    args = p.parse_args()
    url, token = os.environ.get("COUNTERSIGN_URL"), os.environ.get("COUNTERSIGN_TOKEN")
    if not url or not token:
        print("ask.py: set COUNTERSIGN_URL and COUNTERSIGN_TOKEN", file=sys.stderr)
        return 2
    try:
        action = json.load(sys.stdin)
    except ValueError as e:
        print(f"ask.py: the action on stdin is not JSON: {e}", file=sys.stderr)
        return 2
    client = Client(url, token)
    try:
        approval = client.request_approval(action, idempotency_key=args.key or "py_" + uuid.uuid4().hex,
                                           context={"agent": "examples/python/ask.py"})
        print(f"approval {approval['id']} {approval['status']}", flush=True)
        approval = client.wait(approval, timeout=args.timeout)
    except (APIError, OSError) as e:
        print(f"ask.py: {e}", file=sys.stderr)
        return 2
    print(json.dumps(approval, indent=2))
    if approval["status"] == APPROVED:
        return 0
    return 3 if approval["status"] == PENDING else 1


if __name__ == "__main__":
    sys.exit(main())
