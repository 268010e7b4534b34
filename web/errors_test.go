package web

import (
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/policystore"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/workflow"
	"github.com/countersign/countersign/policy"
)

// TestHTTPError pins the status, code and message of every kind of error
// (docs/API.md lists the codes), wrapped as the layers wrap them.
func TestHTTPError(t *testing.T) {
	t.Parallel()
	ad := &workflow.AlreadyDecidedError{Status: "approved", By: "ann@example.com", At: time.Unix(0, 0)}
	for _, tc := range []struct {
		name   string
		err    error
		status int
		code   string
		msg    string
	}{
		{"Echo", echo.NewHTTPError(http.StatusBadRequest, "limit must be between 1 and 200"), 400, "bad_request", "limit must be between 1 and 200"},
		{"EchoWithoutMessage", echo.NewHTTPError(http.StatusRequestEntityTooLarge), 413, "request_entity_too_large", "Request Entity Too Large"},
		{"AlreadyDecided", fmt.Errorf("decide: %w", ad), 409, "already_decided", ad.Error()},
		{"PayloadChanged", fmt.Errorf("request r: %w", workflow.ErrPayloadChanged), 409, "payload_changed", workflow.ErrPayloadChanged.Error()},
		{"EditNeedsReview", fmt.Errorf("%w: rule big", workflow.ErrEditNeedsReview), 422, "edit_needs_review", workflow.ErrEditNeedsReview.Error() + ": rule big"},
		{"Forbidden", fmt.Errorf("%w: you started this run", workflow.ErrForbidden), 403, "forbidden", "not allowed: you started this run"},
		{"WorkflowNotFound", fmt.Errorf("request r: %w", workflow.ErrNotFound), 404, "not_found", "not found"},
		{"StoreNotFound", fmt.Errorf("get run: %w", store.ErrNotFound), 404, "not_found", "not found"},
		{"Invalid", fmt.Errorf("%w: a reason is required", workflow.ErrInvalidInput), 422, "invalid", "invalid input: a reason is required"},
		{"UnknownWorkflow", fmt.Errorf("%w: x", workflow.ErrUnknownWorkflow), 422, "invalid", "unknown workflow: x"},
		{"StoreInvalid", fmt.Errorf("insert run: %w", store.ErrInvalidInput), 422, "invalid", "insert run: invalid input"},
		{"Final", fmt.Errorf("%w (completed)", workflow.ErrFinal), 409, "run_ended", "run has already ended (completed)"},
		{"InvalidPolicy", &policy.LoadError{}, 422, "invalid_policy", (&policy.LoadError{}).Error()},
		{"PolicyChanged", fmt.Errorf("rule r: %w", policystore.ErrPolicyChanged), 409, "policy_changed", "rule r: " + policystore.ErrPolicyChanged.Error()},
		{"TooManyGrants", policystore.ErrTooManyGrants, 409, "too_many_grants", policystore.ErrTooManyGrants.Error()},
		{"Other", errors.New("connection reset"), 500, "internal", "something went wrong on our side; it has been logged"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			status, code, msg := httpError(tc.err)
			require.Equal(t, tc.status, status)
			require.Equal(t, tc.code, code)
			require.Equal(t, tc.msg, msg)
		})
	}
	t.Run("OneNotFound", func(t *testing.T) {
		t.Parallel()
		require.ErrorIs(t, store.ErrNotFound, workflow.ErrNotFound)
	})
}
