package slack

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/countersign/countersign/vocab"
)

// The modal that asks for a reason.
const (
	// ModalCallback names the modal's view, which its view_submission carries.
	ModalCallback = "countersign_reason"
	// ReasonBlock and ReasonAction name its one input (and where its errors go).
	ReasonBlock  = "reason"
	ReasonAction = "reason"
	// MaxReason bounds a reason given in Slack (Slack's own limit for a text
	// input; the console's, 4000, is larger).
	MaxReason = 3000
)

// ModalState is what the modal remembers between the click that opened it
// and its submission (private_metadata, which only the app can set and
// which comes back in the signed view_submission): the request and the
// payload hash the clicked button carried, and the verdict.
type ModalState struct {
	RequestID   string        `json:"r"`
	PayloadHash string        `json:"h"`
	Verdict     vocab.Verdict `json:"v"`
}

// ParseModalState reads private_metadata; ok is false for anything that is
// not a reason modal's state.
func ParseModalState(s string) (ModalState, bool) {
	var m ModalState
	if len(s) > 3000 || json.Unmarshal([]byte(s), &m) != nil {
		return m, false
	}
	ok := m.RequestID != "" && m.PayloadHash != "" && len(m.PayloadHash) <= 200 &&
		(m.Verdict == vocab.VerdictReject || m.Verdict == vocab.VerdictRequestChanges)
	return m, ok
}

// CheckReason trims a reason given in the modal and says what is wrong
// with it, if anything (the message goes in the modal's errors).
func CheckReason(v vocab.Verdict, reason string) (string, string) {
	reason = strings.TrimSpace(reason)
	switch {
	case reason == "" && v == vocab.VerdictRequestChanges:
		return "", "Say what should change: the run receives it as feedback."
	case reason == "":
		return "", "A rejection needs a reason: the run receives it."
	case utf8.RuneCountInString(reason) > MaxReason:
		return "", fmt.Sprintf("At most %d characters.", MaxReason)
	case strings.ContainsRune(reason, 0):
		// The payload's JSON can carry \u0000, which the console's forms
		// refuse (cleanInput) and PostgreSQL cannot store in text.
		return "", "The reason contains a NUL character, which cannot be stored."
	}
	return reason, ""
}

// ReasonModal is the view that asks for the reason of verdict v on the
// request shown by title (the action, escaped here).
func ReasonModal(st ModalState, title string) map[string]any {
	heading, submit, label := "Reject request", "Reject", "Reason (sent to the run)"
	if st.Verdict == vocab.VerdictRequestChanges {
		heading, submit, label = "Request changes", "Send", "What should change (sent to the run as feedback)"
	}
	meta, _ := json.Marshal(st)
	return map[string]any{
		"type": "modal", "callback_id": ModalCallback, "private_metadata": string(meta),
		"title":  plainText(heading),
		"submit": plainText(submit),
		"close":  plainText("Cancel"),
		"blocks": []any{
			Block{Type: "section", Text: &Text{Type: "mrkdwn", Text: shown(title, 500), Verbatim: true}},
			map[string]any{"type": "input", "block_id": ReasonBlock, "label": plainText(label),
				"element": map[string]any{"type": "plain_text_input", "action_id": ReasonAction, "multiline": true,
					"min_length": 1, "max_length": MaxReason}},
		},
	}
}

// OpenModal shows view to the user who clicked (views.open with the
// click's trigger_id, which Slack honours for three seconds).
func (c *Client) OpenModal(ctx context.Context, triggerID string, view map[string]any) error {
	return c.API(ctx, "views.open", map[string]any{"trigger_id": triggerID, "view": view}, nil)
}
