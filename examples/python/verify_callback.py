#!/usr/bin/env python3
"""Checks a callback's signature: the raw body on stdin, the header value as
the argument, the token's callback secret in COUNTERSIGN_CALLBACK_SECRET.

    python3 verify_callback.py "t=1700000000,v1=5f2c..." < body.json

Exits 0 when the signature is valid and recent, 1 otherwise. In a web
handler, call countersign.verify_signature(secret, header, body) the same way.
"""

import os
import sys

from countersign import verify_signature


def main():
    if len(sys.argv) != 2 or "COUNTERSIGN_CALLBACK_SECRET" not in os.environ:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    body = sys.stdin.buffer.read()
    if verify_signature(os.environ["COUNTERSIGN_CALLBACK_SECRET"], sys.argv[1], body):
        print("valid")
        return 0
    print("invalid", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
