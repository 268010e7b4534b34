"""A small client of Countersign's approvals API, standard library only.

    from countersign import Client
    c = Client("https://countersign.example.com", token)
    a = c.request_approval({"kind": "payment.refund", "summary": "Refund 42 EUR",
                            "params": {"amount": 42}}, idempotency_key="call_123")
    a = c.wait(a, timeout=300)
    if a["status"] == "approved":
        execute(a["outcome"]["params"])   # the parameters to execute (edited ones after an edit)

Copy this file into your project; it has no dependencies.
"""

import hashlib
import hmac
import json
import time
import urllib.error
import urllib.parse
import urllib.request

PENDING = "pending"
APPROVED = "approved"
MAX_WAIT = 60  # seconds; the server refuses longer long-polls


class APIError(Exception):
    """An answer other than 200 or 202, with the API's error code and message."""

    def __init__(self, status, code, message):
        super().__init__(f"countersign answered {status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


class Client:
    def __init__(self, base_url, token):
        self.base_url = base_url.rstrip("/")
        self.token = token

    def request_approval(self, action, idempotency_key, callback_url=None, context=None, revises=None):
        """Files an action; returns the Approval (status "approved" at once on the
        auto tier, "pending" otherwise). The same key returns the same approval,
        so a call that failed on the way can be repeated."""
        body = {"idempotency_key": idempotency_key, "action": action}
        if callback_url:
            body["callback_url"] = callback_url
        if context is not None:
            body["context"] = context
        if revises:
            body["revises"] = revises
        return self._call("POST", "/api/v1/approvals", body, timeout=30)

    def get_approval(self, approval_id, wait=0):
        """Returns the Approval, waiting up to `wait` seconds (at most 60) for a decision."""
        wait = max(0, min(int(wait), MAX_WAIT))
        path = "/api/v1/approvals/" + urllib.parse.quote(approval_id, safe="")
        if wait:
            path += f"?wait={wait}s"
        return self._call("GET", path, None, timeout=wait + 30)

    def wait(self, approval, timeout=300):
        """Long-polls until the approval is decided or `timeout` seconds pass;
        returns it as last seen (still "pending" when time ran out)."""
        deadline = time.monotonic() + timeout
        while approval["status"] == PENDING:
            left = deadline - time.monotonic()
            if left < 1:
                break
            approval = self.get_approval(approval["id"], wait=left)
        return approval

    def _call(self, method, path, body, timeout):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base_url + path, data=data, method=method)
        req.add_header("Authorization", "Bearer " + self.token)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return json.loads(resp.read(1 << 20))
        except urllib.error.HTTPError as e:
            try:
                err = json.loads(e.read(1 << 16))["error"]
            except (ValueError, KeyError, TypeError):
                err = {"code": "", "message": e.reason}
            raise APIError(e.code, err.get("code", ""), err.get("message", "")) from None


def verify_signature(secret, header, body, tolerance=300, now=None):
    """Checks a callback's Countersign-Signature header ("t=<unix>,v1=<hex>"):
    an HMAC-SHA256 with the token's callback secret over "<t>.<body>", made at
    most `tolerance` seconds ago. `body` is the raw request body (bytes)."""
    if isinstance(secret, str):
        secret = secret.encode()
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        t = int(fields["t"])
    except (KeyError, ValueError):
        return False
    now = time.time() if now is None else now
    if abs(now - t) > tolerance:
        return False
    want = hmac.new(secret, f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(want, fields.get("v1", ""))
