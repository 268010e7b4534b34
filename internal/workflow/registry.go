package workflow

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"
	"time"
)

// Options are a workflow's budgets and limits. Zero values take defaults.
type Options struct {
	Description   string
	MaxSteps      int           // steps per run, default 50
	MaxModelCalls int           // model calls per run, default 10
	MaxTokens     int           // tokens per run, default 50,000
	StepTimeout   time.Duration // per step attempt, default 2 minutes
	// MaxStepOutput overrides the engine's limit on a step's recorded
	// result, in bytes of JSON; 0 keeps the engine's.
	MaxStepOutput int
	// Example is a sample input, shown by `countersign run start --help` and the console.
	Example any
	// Retry is the retry policy of the workflow's steps that name none
	// (WithRetry); zero fields take the defaults (5 attempts, 1 s doubling
	// to at most 1 minute).
	Retry RetryPolicy
	// HandlesRejection makes a rejection resume the run instead of ending
	// it: RequestApproval returns the rejected Decision, so that the
	// workflow can act on it (the approvals API sends its callback and
	// records the outcome). The workflow then decides how the run ends.
	HandlesRejection bool
	// Version numbers this code of the workflow, default 1. Several
	// versions of one name may be registered at once: new runs start on the
	// newest, and each run executes the version it started with (see
	// version.go).
	Version int
	// Internal marks a built-in workflow whose input only its own service
	// writes (the approvals API's names the filer and the token whose
	// secret signs the callback): Engine.Start refuses it unless
	// StartParams.Internal says that service is the caller.
	Internal bool
}

func (o Options) withDefaults() Options {
	if o.MaxSteps <= 0 {
		o.MaxSteps = 50
	}
	if o.MaxModelCalls <= 0 {
		o.MaxModelCalls = 10
	}
	if o.MaxTokens <= 0 {
		o.MaxTokens = 50_000
	}
	if o.StepTimeout <= 0 {
		o.StepTimeout = 2 * time.Minute
	}
	if o.Version <= 0 {
		o.Version = 1
	}
	return o
}

// Definition is a registered workflow.
type Definition struct {
	Name    string
	Options Options
	run     func(ctx context.Context, input json.RawMessage) (any, error)
	check   func(input json.RawMessage) error
	fields  []string
	undos   map[string]undoFunc // by effect name (Compensate)
}

// InputFields lists the JSON names of the input's fields that are not
// omitempty or omitzero, in declaration order: what a caller is expected to send. An
// input that is not a struct needs none.
func (d *Definition) InputFields() []string { return d.fields }

// inputFields reads InputFields from In's type once, at registration.
func inputFields[In any]() []string {
	t := reflect.TypeFor[In]()
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return nil
	}
	var names []string
	for f := range t.Fields() {
		if !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		optional := slices.ContainsFunc(strings.Split(opts, ","), func(o string) bool { return o == "omitempty" || o == "omitzero" })
		if name == "-" || optional {
			continue
		}
		if name == "" {
			name = f.Name
		}
		names = append(names, name)
	}
	return names
}

// Registry maps workflow names to their code.
type Registry struct {
	defs     map[string]*Definition         // the newest version of each name
	versions map[string]map[int]*Definition // every registered version
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{defs: map[string]*Definition{}, versions: map[string]map[int]*Definition{}}
}

// Register adds a workflow: a Go function from its input type to its output
// type. Its input arrives decoded from the run's JSON input, unknown fields
// refused; its output is stored as the run's JSON output. Registering a name
// and version twice panics: it is a programming error.
func Register[In, Out any](r *Registry, name string, fn func(ctx context.Context, in In) (Out, error), opts ...Options) {
	var o Options
	if len(opts) > 0 {
		o = opts[0]
	}
	r.add(&Definition{
		Name:    name,
		Options: o.withDefaults(),
		run: func(ctx context.Context, raw json.RawMessage) (any, error) {
			in, err := decodeInput[In](raw)
			if err != nil {
				return nil, Permanent(err)
			}
			return fn(ctx, in)
		},
		check: func(raw json.RawMessage) error {
			_, err := decodeInput[In](raw)
			return err
		},
		fields: inputFields[In](),
	})
}

func decodeInput[In any](raw json.RawMessage) (In, error) {
	var in In
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return in, fmt.Errorf("%w: %v", ErrInvalidInput, err)
	}
	if dec.More() {
		return in, fmt.Errorf("%w: trailing data after the JSON value", ErrInvalidInput)
	}
	return in, nil
}

// Include adds every workflow of other to r, so that a process can run a
// binary's workflows beside the ones it adds itself without changing the
// registry it was given. A name and version in both panics, as Register does.
func (r *Registry) Include(other *Registry) {
	if other == nil {
		return
	}
	for _, name := range other.Names() {
		for _, def := range other.Versions(name) {
			r.add(def)
		}
	}
}

// Get returns a workflow by name: its newest version.
func (r *Registry) Get(name string) (*Definition, bool) {
	d, ok := r.defs[name]
	return d, ok
}

// Names lists the registered workflows in order.
func (r *Registry) Names() []string {
	names := make([]string, 0, len(r.defs))
	for n := range r.defs {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
