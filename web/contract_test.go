package web_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/stretchr/testify/require"
)

// specRouter loads docs/openapi.yaml once for every test of the package.
// The spec's servers are dropped for routing: tests listen on 127.0.0.1 at
// a port of their own, and the paths alone name the operation.
var specRouter = sync.OnceValues(func() (routers.Router, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromFile("../docs/openapi.yaml")
	if err != nil {
		return nil, fmt.Errorf("load spec: %w", err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		return nil, fmt.Errorf("spec is invalid: %w", err)
	}
	doc.Servers = nil
	return gorillamux.NewRouter(doc)
})

// contract is an http.RoundTripper that holds every answer under /api/ to
// docs/openapi.yaml: the operation must exist, document the status, and the
// body must have a documented content type and match its schema. A mismatch
// fails t with the operation, the status and the validation error. The body
// is checked when the caller has read it to the end or closes it, so that a
// streamed export stays streamed.
type contract struct {
	t    errorf
	next http.RoundTripper
}

// errorf is the part of testing.TB the check uses, so that a test can see
// what it reports.
type errorf interface {
	Errorf(format string, args ...any)
}

// contractClient returns an HTTP client whose API answers are checked
// against the spec.
func contractClient(t errorf) *http.Client {
	return &http.Client{Transport: checked(t, http.DefaultTransport)}
}

// checked wraps next so that its API answers are checked against the spec.
func checked(t errorf, next http.RoundTripper) http.RoundTripper {
	if next == nil {
		next = http.DefaultTransport
	}
	return &contract{t: t, next: next}
}

func (c *contract) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := c.next.RoundTrip(req)
	if err != nil || !strings.HasPrefix(req.URL.Path, "/api/") {
		return resp, err
	}
	resp.Body = &checkedBody{body: resp.Body, check: func(raw []byte) {
		if err := checkAnswer(req, resp, raw); err != nil {
			c.t.Errorf("%s %s answered %d against docs/openapi.yaml: %v", req.Method, req.URL.Path, resp.StatusCode, err)
		}
	}}
	return resp, nil
}

// checkAnswer validates one answer, whose body is raw, against the spec.
func checkAnswer(req *http.Request, resp *http.Response, raw []byte) error {
	router, err := specRouter()
	if err != nil {
		return err
	}
	route, params, err := router.FindRoute(req)
	if err != nil {
		return fmt.Errorf("no operation: %w", err)
	}
	return openapi3filter.ValidateResponse(context.Background(), &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route},
		Status:                 resp.StatusCode,
		Header:                 resp.Header,
		Body:                   io.NopCloser(bytes.NewReader(raw)),
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	})
}

// checkedBody keeps what the caller reads and checks it once: at the end of
// the body, or at Close after reading the rest.
type checkedBody struct {
	body  io.ReadCloser
	buf   bytes.Buffer
	check func([]byte)
	once  sync.Once
}

func (b *checkedBody) Read(p []byte) (int, error) {
	n, err := b.body.Read(p)
	b.buf.Write(p[:n])
	if err == io.EOF {
		b.once.Do(func() { b.check(b.buf.Bytes()) })
	}
	return n, err
}

func (b *checkedBody) Close() error {
	b.once.Do(func() {
		_, _ = io.Copy(&b.buf, b.body)
		b.check(b.buf.Bytes())
	})
	return b.body.Close()
}

// recorder keeps the failures the check reports.
type recorder []string

func (r *recorder) Errorf(format string, args ...any) { *r = append(*r, fmt.Sprintf(format, args...)) }

const runID = "7b0e8c52-8f0c-4a59-9d8e-1f6f3c1c2a10"

// TestContractBites shows that the check refuses what the spec does not
// allow: answers from a handler that is not Countersign's.
func TestContractBites(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, path, contentType, body string
		status                        int
		want                          string
	}{
		{"WrongType", "/api/v1/runs/" + runID, "application/json", `{"id":"` + runID + `","status":"queued","steps":"none"}`, 200, "steps"},
		{"UnknownStatus", "/api/v1/runs/" + runID, "application/json", `{"id":"` + runID + `","status":"lost"}`, 200, "status"},
		{"UndocumentedCode", "/api/v1/runs/" + runID, "application/json", `{}`, 418, "status is not supported"},
		{"WrongContentType", "/api/v1/runs/" + runID, "text/plain", `{}`, 200, "Content-Type"},
		{"ErrorWithoutCode", "/api/v1/runs/" + runID, "application/json", `{"error":{"message":"no"}}`, 404, "code"},
		{"NoOperation", "/api/v1/nowhere", "application/json", `{}`, 200, "no operation"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			req, err := http.NewRequest(http.MethodGet, "http://127.0.0.1:1"+tc.path, nil)
			require.NoError(t, err)
			resp := &http.Response{StatusCode: tc.status, Header: http.Header{"Content-Type": {tc.contentType}}}
			err = checkAnswer(req, resp, []byte(tc.body))
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
		})
	}

	// Through the client every web test uses, against a live handler.
	t.Run("Client", func(t *testing.T) {
		t.Parallel()
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"id":"`+runID+`","status":"queued","steps":null}`)
		}))
		t.Cleanup(srv.Close)
		var got recorder
		resp, err := contractClient(&got).Get(srv.URL + "/api/v1/runs/" + runID)
		require.NoError(t, err)
		_, err = io.ReadAll(resp.Body)
		require.NoError(t, err)
		require.NoError(t, resp.Body.Close())
		require.Len(t, got, 1, "one failure, reported once")
		require.Contains(t, got[0], "GET /api/v1/runs/"+runID+" answered 200")
		require.Contains(t, got[0], "steps")
	})

	t.Run("OK", func(t *testing.T) {
		t.Parallel()
		req, err := http.NewRequest(http.MethodGet, "http://127.0.0.1:1/api/v1/runs/"+runID, nil)
		require.NoError(t, err)
		resp := &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"application/json; charset=UTF-8"}}}
		require.NoError(t, checkAnswer(req, resp, []byte(`{"id":"`+runID+`","status":"queued","steps":[]}`)))
	})
}
