package web

import (
	"encoding/json"
	"os"
	"reflect"
	"slices"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/countersign/countersign/internal/receipt"
)

// TestWireMatchesSpec marshals every API answer with each of its fields set
// and holds the names it sends against docs/openapi.yaml, in both
// directions: a field the spec promises must be sent, and a field sent must
// be in the spec or in the short list of fields the API has always sent
// beyond it. Renaming a store column or field cannot get past this test.
func TestWireMatchesSpec(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("../docs/openapi.yaml")
	require.NoError(t, err)
	var spec map[string]any
	require.NoError(t, yaml.Unmarshal(raw, &spec))

	schema := func(name string) []string { return props(t, spec, "components", "schemas", name) }
	ok := func(path, method string) []string {
		return props(t, spec, "paths", path, method, "responses", "200", "content", "application/json", "schema")
	}
	// Sent since before the spec was written, and relied on by clients.
	stepExtra := []string{"run_id"}
	requestExtra := []string{"step_seq", "on_timeout", "escalate_to", "escalated_at", "batch_key", "batch_id", "note", "started_by"}
	decisionExtra := []string{"run_id", "batch_decision_id"}

	for _, tc := range []struct {
		name  string
		value any
		want  []string
	}{
		{"Run", runJSON{}, schema("Run")},
		{"Step", stepJSON{}, join(schema("Step"), stepExtra)},
		{"Request", requestJSON{}, join(schema("Request"), requestExtra)},
		{"Decision", decisionJSON{}, join(schema("Decision"), decisionExtra)},
		{"RunGet", runWithStepsJSON{}, join(schema("Run"), []string{"steps"})},
		{"RunList", runPageJSON{}, ok("/api/v1/runs", "get")},
		{"RequestList", requestPageJSON{}, ok("/api/v1/requests", "get")},
		{"RequestGet", requestDetailJSON{}, join(schema("Request"), requestExtra, []string{"votes", "decision"})},
		{"Decide", decideJSON{}, ok("/api/v1/requests/{id}/decision", "post")},
		{"BatchList", batchPageJSON{}, ok("/api/v1/batches", "get")},
		{"BatchGet", batchDetailJSON{}, ok("/api/v1/batches/{id}", "get")},
		{"BatchDecide", batchDecisionJSON{}, ok("/api/v1/batches/{id}/decision", "post")},
		{"RunEvent", eventJSON{}, schema("RunEvent")},
		{"Unusable", unusableJSON{}, schema("Unusable")},
		{"Error", apiError{}, schema("Error")},
		{"Receipt", receiptJSON{}, schema("Receipt")},
		{"ReceiptKey", receiptKeyJSON{}, schema("ReceiptKey")},
		{"ReceiptKeys", receiptKeysJSON{}, schema("ReceiptKeys")},
		{"ReceiptClaims", receipt.Claims{}, schema("ReceiptClaims")},
		{"Approval", approvalJSON{}, schema("Approval")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.ElementsMatch(t, tc.want, sentNames(t, tc.value))
		})
	}

	t.Run("ItemOutcome", func(t *testing.T) {
		t.Parallel()
		refused := props(t, spec, "paths", "/api/v1/batches/{id}/decision", "post", "responses", "200",
			"content", "application/json", "schema", "properties", "refused", "items")
		require.ElementsMatch(t, refused, sentNames(t, itemOutcomeJSON{}))
	})
}

// TestWireEmpty pins what an empty page and an absent decision look like:
// [] and null, never a missing key.
func TestWireEmpty(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		value any
		want  string
	}{
		{"RunList", runPageJSON{Runs: mapSlice(nil, runOf)}, `{"runs":[]}`},
		{"RequestList", requestPageJSON{Requests: mapSlice(nil, requestOf)}, `{"requests":[]}`},
		{"BatchList", batchPageJSON{Batches: mapSlice(nil, batchOf)}, `{"batches":[]}`},
		{"Decide", decideJSON{Status: decideAwaitingMoreApproval, Approvals: 1, ApprovalsRequired: 2},
			`{"approvals":1,"approvals_required":2,"decision":null,"request":null,"status":"awaiting_more_approvals"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b, err := json.Marshal(tc.value)
			require.NoError(t, err)
			require.JSONEq(t, tc.want, string(b))
		})
	}
}

// props returns the property names of the schema at path, following $ref
// and allOf.
func props(t *testing.T, spec map[string]any, path ...string) []string {
	t.Helper()
	var node any = spec
	for _, p := range path {
		m, ok := node.(map[string]any)
		require.True(t, ok, "spec path %v: %q is not an object", path, p)
		node, ok = m[p]
		require.True(t, ok, "spec path %v: no %q", path, p)
	}
	return schemaProps(t, spec, node.(map[string]any))
}

func schemaProps(t *testing.T, spec, s map[string]any) []string {
	t.Helper()
	if ref, ok := s["$ref"].(string); ok {
		const prefix = "#/components/schemas/"
		require.Contains(t, ref, prefix)
		return props(t, spec, "components", "schemas", ref[len(prefix):])
	}
	var out []string
	for _, part := range asList(s["allOf"]) {
		out = append(out, schemaProps(t, spec, part.(map[string]any))...)
	}
	if p, ok := s["properties"].(map[string]any); ok {
		for k := range p {
			out = append(out, k)
		}
	}
	require.NotEmpty(t, out, "a schema without properties")
	return out
}

func asList(v any) []any {
	l, _ := v.([]any)
	return l
}

func join(lists ...[]string) []string { return slices.Concat(lists...) }

// sentNames marshals v with every field set (so omitempty hides none) and
// returns the top-level names it sends.
func sentNames(t *testing.T, v any) []string {
	t.Helper()
	p := reflect.New(reflect.TypeOf(v))
	fill(p.Elem())
	b, err := json.Marshal(p.Interface())
	require.NoError(t, err)
	var m map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(b, &m))
	var names []string
	for k := range m {
		names = append(names, k)
	}
	return names
}

// fill sets every field of v to a value that is not empty.
func fill(v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(v.Elem())
	case reflect.Struct:
		if v.Type() == reflect.TypeFor[time.Time]() {
			v.Set(reflect.ValueOf(time.Unix(1, 0)))
			return
		}
		for i := range v.NumField() {
			f := v.Field(i)
			// An embedded type is unexported; json still reads it.
			fill(reflect.NewAt(f.Type(), unsafe.Pointer(f.UnsafeAddr())).Elem())
		}
	case reflect.Slice:
		if v.Type() == reflect.TypeFor[json.RawMessage]() {
			v.SetBytes([]byte(`{"k":1}`))
			return
		}
		v.Set(reflect.MakeSlice(v.Type(), 1, 1))
		fill(v.Index(0))
	case reflect.String:
		v.SetString("x")
	case reflect.Int, reflect.Int64:
		v.SetInt(1)
	}
}
