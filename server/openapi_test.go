package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/userattrs/userattrs"
	"github.com/userattrs/userattrs/server"
)

// The OpenAPI document describes what the running handler really answers:
// every response below, success or error, validates against it, and its
// status is one the document lists for the route.
func TestOpenAPI(t *testing.T) {
	ctx := context.Background()
	doc, err := openapi3.NewLoader().LoadFromFile("../api/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(ctx); err != nil {
		t.Fatalf("the document is not valid OpenAPI: %v", err)
	}
	policy, _ := userattrs.NewPolicy(userattrs.PolicyConfig{ReadOnly: []string{"locked"}, Reserved: userattrs.DefaultReserved})
	f := newFixture(t, func(o *options) { o.policy = policy; o.limits.MaxAttributes = 4 })
	doc.Servers = openapi3.Servers{{URL: f.url}}
	router, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	full := f.token("alice", read, write)
	f.put(full, `{"multi":["a","b"],"one":"x"}`)
	etag := f.get(full).header.Get("ETag")

	type exchange struct {
		method, path, body string
		headers            []string
		validRequest       bool // the request itself follows the document
	}
	auth := func(tok string, more ...string) []string {
		return append([]string{"Authorization", "Bearer " + tok, "Content-Type", "application/json"}, more...)
	}
	exchanges := []exchange{
		{"GET", "/user/2025-1/attributes", "", auth(full), true},
		{"GET", "/user/2024-2/attributes", "", auth(full), true},
		{"PUT", "/user/2024-2/attributes", `{"gone":[],"l":["1","2"]}`, auth(full), true},
		{"GET", "/user/2024-3/attributes", "", auth(full, "If-None-Match", etag), true},
		// kin-openapi reads a schema without type as refusing null (see
		// TestOpenAPIValueSchemas): requests with null are not checked by it.
		{"PUT", "/user/2025-1/attributes", `{"one":null,"l":["1","2"]}`, auth(full, "If-Match", etag), false},
		{"PUT", "/user/2024-3/attributes", `{"referred":"false","tos_accepted":"true"}`, auth(full), true},
		{"PUT", "/user/2024-3/attributes", `{"a":`, auth(full), false},
		{"PUT", "/user/2024-3/attributes", `{"a":1,"b":[true]}`, auth(full), false},
		{"PUT", "/user/2024-3/attributes", `{"w":"1","x":"2","y":"3"}`, auth(full), true},
		{"PUT", "/user/2024-3/attributes", `{"locked":"1"}`, auth(full), true},
		{"PUT", "/user/2024-3/attributes", `{"a":"1"}`, auth(f.token("alice", read)), true},
		{"PUT", "/user/2024-3/attributes", `{"a":"1"}`, auth(full, "If-Match", `"stale"`), true},
		{"PUT", "/user/2024-3/attributes", `{"a":"1"}`, auth(full, "If-Match", ""), true},
		{"PUT", "/user/2024-3/attributes", `{"data":"1"}`, auth(full), true},
		{"PUT", "/user/2024-3/attributes", `{"a":"` + strings.Repeat("x", 70000) + `"}`, auth(full), false},
		{"PUT", "/user/2024-3/attributes", `{}`, []string{"Authorization", "Bearer " + full, "Content-Type", "text/plain"}, false},
		{"GET", "/user/2025-1/attributes", "", nil, true},
		{"GET", "/user/2025-1/attributes", "", []string{"Authorization", "Bearer nope"}, true},
		{"GET", "/admin/users/alice/attributes", "", auth(f.adminToken()), true},
		{"PUT", "/admin/users/alice/attributes", `{"locked":"1","n":["a","b"]}`, auth(f.adminToken()), true},
		{"PUT", "/admin/users/alice/attributes", `{"a":"1"}`, auth(f.adminToken(), "If-Match", `"stale"`), true},
		{"PUT", "/admin/users/alice/attributes", `{"a":"1"}`, auth(f.adminToken(), "If-Match", " "), true},
		{"PUT", "/admin/users/alice/attributes", `{"a":1}`, auth(f.adminToken()), false},
		{"GET", "/admin/users/alice/attributes", "", auth(full), true},
		{"GET", "/admin/users/alice/attributes/history", "", auth(f.adminToken()), true},
		{"GET", "/admin/events/parked", "", auth(f.adminToken()), true},
		{"POST", "/admin/events/parked/e1/resend", "", auth(f.adminToken()), true},
		{"POST", "/admin/events/parked/e1/resend", "", auth(full), true},
		{"GET", "/admin/users/alice/attributes/history?page[size]=1&filter[key]=n", "", auth(f.adminToken()), true},
		{"GET", "/admin/users/alice/attributes/history?page[size]=0", "", auth(f.adminToken()), false},
		{"GET", "/admin/users/alice/attributes/history", "", auth(full), true},
		{"GET", "/health/liveness", "", nil, true},
		{"GET", "/health/readiness", "", nil, true},
		{"GET", "/metrics", "", nil, true},
	}
	for _, ex := range exchanges {
		t.Run(ex.method+" "+ex.path+" "+ex.body[:min(len(ex.body), 30)], func(t *testing.T) {
			req, _ := http.NewRequest(ex.method, f.url+ex.path, strings.NewReader(ex.body))
			for i := 0; i < len(ex.headers); i += 2 {
				req.Header.Set(ex.headers[i], ex.headers[i+1])
			}
			route, params, err := router.FindRoute(req)
			if err != nil {
				t.Fatalf("the document has no route for %s %s: %v", ex.method, ex.path, err)
			}
			reqInput := &openapi3filter.RequestValidationInput{
				Request: req, PathParams: params, Route: route,
				Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc},
			}
			if ex.validRequest {
				if ex.body != "" {
					req.Body = io.NopCloser(strings.NewReader(ex.body))
				}
				if err := openapi3filter.ValidateRequest(ctx, reqInput); err != nil && !strings.Contains(err.Error(), "security") {
					t.Fatalf("request does not follow the document: %v", err)
				}
			}
			req.Body = io.NopCloser(strings.NewReader(ex.body))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			err = openapi3filter.ValidateResponse(ctx, &openapi3filter.ResponseValidationInput{
				RequestValidationInput: reqInput,
				Status:                 resp.StatusCode,
				Header:                 resp.Header,
				Body:                   io.NopCloser(bytes.NewReader(body)),
				Options:                &openapi3filter.Options{IncludeResponseStatus: true},
			})
			if err != nil {
				t.Fatalf("%d response does not follow the document: %v\n%s", resp.StatusCode, err, body)
			}
		})
	}

	// Paths the document does not know still answer its error schema.
	errorsSchema := doc.Components.Schemas["Errors"].Value
	for _, p := range []string{"/", "/user/2023-1/attributes", "/user/2024-3/attributes/"} {
		res := f.do("GET", p, "", "Authorization", "Bearer "+full)
		var v any
		json.Unmarshal(res.body, &v)
		if err := errorsSchema.VisitJSON(v); err != nil || res.status != 404 {
			t.Errorf("GET %s: %d, %v", p, res.status, err)
		}
	}
}

// The value schemas say exactly what the server accepts and answers,
// though written as "none of the other JSON types" so that generated
// clients take plain values; and the document lists the served versions.
func TestOpenAPIValueSchemas(t *testing.T) {
	doc, err := openapi3.NewLoader().LoadFromFile("../api/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	sixtyFive := `[` + strings.TrimSuffix(strings.Repeat(`"x",`, 65), ",") + `]`
	cases := []struct {
		schema, value string
		valid         bool
	}{
		{"AttributeValue", `"x"`, true},
		{"AttributeValue", `["a","b"]`, true},
		{"AttributeValue", `["a"]`, false}, // one value reads back as a string
		{"AttributeValue", `[]`, false},
		{"AttributeValue", `["a",1]`, false},
		{"AttributeValue", `null`, false},
		{"AttributeValue", `1`, false},
		{"AttributeValue", `true`, false},
		{"AttributeValue", `{}`, false},
		{"AttributeChange", `"x"`, true},
		{"AttributeChange", `null`, true},
		{"AttributeChange", `[]`, true},
		{"AttributeChange", `["a"]`, true},
		{"AttributeChange", `["a","b"]`, true},
		{"AttributeChange", `[1]`, false},
		{"AttributeChange", `["a",null]`, false},
		{"AttributeChange", `true`, false},
		{"AttributeChange", `1.5`, false},
		{"AttributeChange", `{"a":"b"}`, false},
		{"AttributeChange", sixtyFive, false},
		{"AttributeChange", `"` + strings.Repeat("x", 2049) + `"`, false},
		{"AttributeChange", `["` + strings.Repeat("x", 2049) + `"]`, false},
	}
	for _, tc := range cases {
		var v any
		if err := json.Unmarshal([]byte(tc.value), &v); err != nil {
			t.Fatal(err)
		}
		schema := doc.Components.Schemas[tc.schema].Value
		err := schema.VisitJSON(v)
		if v == nil && schema.Type == nil && !schema.Nullable {
			// OpenAPI 3.0.3 lets "nullable" apply only beside a type, and
			// leaves null to a typeless schema's other keywords, where
			// kin-openapi refuses it: here only "not" can refuse it.
			err = nil
			if schema.Not != nil && schema.Not.Value.VisitJSON(v) == nil {
				err = errors.New("not excludes null")
			}
		}
		if (err == nil) != tc.valid {
			t.Errorf("%s %.40s: valid=%v, want %v", tc.schema, tc.value, err == nil, tc.valid)
		}
	}
	var listed []string
	for _, v := range doc.Paths.Find("/user/{version}/attributes").Parameters[0].Value.Schema.Value.Enum {
		listed = append(listed, v.(string))
	}
	if !slices.Equal(listed, server.DefaultVersions) {
		t.Errorf("the document lists versions %v, the server serves %v", listed, server.DefaultVersions)
	}
}
