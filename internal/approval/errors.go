package approval

import (
	"errors"
	"fmt"
	"time"

	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/vocab"
)

var (
	// ErrInvalidInput is returned for malformed decision input.
	ErrInvalidInput = errors.New("invalid input")
	// ErrNotFound is returned for a request or batch that does not exist. It
	// is store.ErrNotFound, so that "not found" is one error in every layer.
	ErrNotFound = store.ErrNotFound
	// ErrAlreadyDecided is matched by every *AlreadyDecidedError.
	ErrAlreadyDecided = errors.New("already decided")
	// ErrPayloadChanged means the action changed since the reviewer saw it.
	ErrPayloadChanged = errors.New("the proposed action changed since it was shown; reload and review it again")
	// ErrForbidden means the actor may not make this decision.
	ErrForbidden = errors.New("not allowed")
	// ErrEditNeedsReview means an edited action falls under a rule that the
	// editor may not decide alone; the message names the rule.
	ErrEditNeedsReview = errors.New("the edited action needs review under another rule")
)

// AlreadyDecidedError says who won the race to decide a request.
type AlreadyDecidedError struct {
	Status vocab.RequestStatus
	By     string
	At     time.Time
}

func (e *AlreadyDecidedError) Error() string {
	return fmt.Sprintf("already decided (%s) by %s at %s", e.Status, e.By, e.At.UTC().Format(time.RFC3339))
}

// Is makes errors.Is(err, ErrAlreadyDecided) hold.
func (e *AlreadyDecidedError) Is(target error) bool { return target == ErrAlreadyDecided }
