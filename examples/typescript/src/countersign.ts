// A small client of Countersign's approvals API: fetch and node:crypto only.
//
//   const c = new Client("https://countersign.example.com", token);
//   let a = await c.requestApproval({ kind: "payment.refund", summary: "Refund 42 EUR",
//                                     params: { amount: 42 } }, "call_123");
//   a = await c.wait(a, 300);
//   if (a.status === "approved") execute(a.outcome!.params); // edited params after an edit
//
// Copy this file into your project; it has no runtime dependencies.
import { createHmac, timingSafeEqual } from "node:crypto";

export type Status = "pending" | "approved" | "rejected" | "changes_requested" | "cancelled" | "failed";

export interface Action {
  kind: string;
  summary: string;
  target?: string;
  params?: Record<string, unknown>;
  current?: Record<string, unknown>;
  risk?: "low" | "medium" | "high";
  reversible?: boolean;
  estimated_cost?: number;
  rationale?: string;
  checks?: { name: string; passed: boolean; detail?: string }[];
}

export interface Outcome {
  verdict: "approve" | "edit" | "reject" | "request_changes";
  params?: Record<string, unknown>;
  reason?: string;
  decided_by: string;
  decided_at: string;
  rule?: string;
  policy_version?: number;
  payload_hash?: string;
}

export interface Approval {
  id: string;
  status: Status;
  tier: "auto" | "batched" | "explicit";
  rule?: string;
  request_id?: string;
  review_url?: string;
  idempotency_key?: string;
  outcome?: Outcome;
  [more: string]: unknown;
}

/** An answer other than 200 or 202, with the API's error code and message. */
export class APIError extends Error {
  constructor(readonly status: number, readonly code: string, message: string) {
    super(`countersign answered ${status} ${code}: ${message}`);
  }
}

/** The longest long-poll the server accepts, in seconds. */
export const MAX_WAIT = 60;

export class Client {
  constructor(readonly baseURL: string, readonly token: string) {
    this.baseURL = baseURL.replace(/\/+$/, "");
  }

  /** Files an action. The same key returns the same approval, so a failed call can be repeated. */
  requestApproval(action: Action, idempotencyKey: string,
    opts: { callbackURL?: string; context?: Record<string, unknown>; revises?: string } = {}): Promise<Approval> {
    const body: Record<string, unknown> = { idempotency_key: idempotencyKey, action };
    if (opts.callbackURL) body.callback_url = opts.callbackURL;
    if (opts.context) body.context = opts.context;
    if (opts.revises) body.revises = opts.revises;
    return this.call("POST", "/api/v1/approvals", body, 30);
  }

  /** Returns the approval, waiting up to `wait` seconds (at most 60) for a decision. */
  getApproval(id: string, wait = 0): Promise<Approval> {
    wait = Math.max(0, Math.min(Math.floor(wait), MAX_WAIT));
    const q = wait > 0 ? `?wait=${wait}s` : "";
    return this.call("GET", `/api/v1/approvals/${encodeURIComponent(id)}${q}`, undefined, wait + 30);
  }

  /** Long-polls until decided or `timeout` seconds pass; returns the approval as last seen. */
  async wait(approval: Approval, timeout = 300): Promise<Approval> {
    const deadline = Date.now() + timeout * 1000;
    while (approval.status === "pending") {
      const left = (deadline - Date.now()) / 1000;
      if (left < 1) break;
      approval = await this.getApproval(approval.id, left);
    }
    return approval;
  }

  private async call(method: string, path: string, body: unknown, timeoutSeconds: number): Promise<Approval> {
    const resp = await fetch(this.baseURL + path, {
      method,
      headers: {
        Authorization: `Bearer ${this.token}`,
        Accept: "application/json",
        ...(body === undefined ? {} : { "Content-Type": "application/json" }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
      redirect: "manual", // never send the token where a redirect points
      signal: AbortSignal.timeout(timeoutSeconds * 1000),
    });
    const text = await resp.text();
    if (resp.status !== 200 && resp.status !== 202) {
      let code = "", message = resp.statusText;
      try {
        ({ code, message } = JSON.parse(text).error);
      } catch { /* not the API's error shape */ }
      throw new APIError(resp.status, code, message);
    }
    return JSON.parse(text) as Approval;
  }
}

/**
 * Checks a callback's Countersign-Signature header ("t=<unix>,v1=<hex>"): an
 * HMAC-SHA256 with the token's callback secret over "<t>.<body>", made at most
 * `toleranceSeconds` ago. `body` is the raw request body.
 */
export function verifySignature(secret: string, header: string, body: string | Buffer,
  toleranceSeconds = 300, nowSeconds = Date.now() / 1000): boolean {
  const fields = new Map(header.split(",").map((p) => {
    const i = p.indexOf("=");
    return [p.slice(0, i).trim(), p.slice(i + 1).trim()] as [string, string];
  }));
  const t = Number(fields.get("t"));
  if (!Number.isInteger(t) || Math.abs(nowSeconds - t) > toleranceSeconds) return false;
  const want = createHmac("sha256", secret).update(`${t}.`).update(body).digest();
  const got = Buffer.from(fields.get("v1") ?? "", "hex");
  return got.length === want.length && timingSafeEqual(got, want);
}
