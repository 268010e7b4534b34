// Package receipt signs decision receipts: a statement, signed by the server
// with Ed25519, that exactly this action was decided this way under this
// rule, so that the tool that executes an action can check it offline.
package receipt

import "time"

// Claims are what a receipt states.
type Claims struct {
	Version    int    `json:"v"`
	KeyID      string `json:"key_id"`
	ApprovalID string `json:"approval_id,omitempty"` // the approvals API's id, when filed through it
	RequestID  string `json:"request_id"`
	// Verdict is approve, edit, reject or request_changes.
	Verdict    string `json:"verdict"`
	ActionKind string `json:"action_kind"`
	Target     string `json:"target"`
	// Params are the parameters to execute: the edited ones after an edit.
	Params map[string]any `json:"params"`
	// PayloadHash is the hash of the action as decided (the edited action
	// after an edit), as the audit log records it.
	PayloadHash   string    `json:"payload_hash"`
	Rule          string    `json:"rule"`
	PolicyVersion int       `json:"policy_version"`
	AuditSeq      int64     `json:"audit_seq"`
	DecidedBy     string    `json:"decided_by"`
	DecidedAt     time.Time `json:"decided_at"`
}

// Receipt is a signed statement. Payload holds the exact signed bytes;
// Claims repeats them decoded, for reading: verifiers use Payload.
type Receipt struct {
	KeyID     string `json:"key_id"`
	Payload   string `json:"payload"`   // base64url, unpadded, of the claims' JSON
	Signature string `json:"signature"` // base64url, unpadded, Ed25519 over the payload's bytes
	Claims    Claims `json:"claims"`
}
