package main

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/userattrs/userattrs/internal/kctest"
	"github.com/userattrs/userattrs/internal/sdkdecode"
)

// sdkExchange is one request of a published PACE SDK, as its generated code
// and HTTP stack send it, and what the SDK needs of the answer.
type sdkExchange struct {
	name   string
	method string
	// the header lines after the request line, in the order the SDK's
	// HTTP stack writes them; {host}, {token} and {length} stand for the
	// server's address, the bearer token and the body's length.
	headers []string
	body    string
	status  int
	// for a 200: the attributes the JSON object must hold afterwards; for
	// an error: its code, and text its detail must contain.
	want   map[string]any
	code   string
	detail string
}

// The Android SDK (pace/cloud-sdk-android, with Retrofit 2.9.0, Moshi
// 1.14.0 and OkHttp 4.10.0 as buildSrc/src/main/java/Versions.kt pins them).
// Retrofit writes the @HeaderMap that BaseRequest.headers builds
// (api/request/BaseRequest.kt:40-58) in its order: Authorization (which
// API.addAuthorizationHeader puts into API.additionalHeaders), Accept,
// Content-Type, API-Key, uber-trace-id (RequestUtils.getUberTraceId: eight
// hex digits, then ":0053444B:0:01") and the SDK's own User-Agent
// (PACECloudSDK.getBaseUserAgent). GetUserAttributesAPI.kt passes
// "application/vnd.api+json" as both content type and accept;
// SetUserAttributesAPI.kt "application/json" as both. On a request with a
// body Retrofit takes Content-Type out of the headers and puts it on the
// body, as it is, without a charset; OkHttp's BridgeInterceptor then adds
// Content-Type and Content-Length, Host, Connection and Accept-Encoding,
// and no User-Agent of its own since the SDK set one.
const (
	androidUserAgent = "User-Agent: ExampleApp/3.2.0_320 (Google Pixel 7 Android/14) Cloud-SDK/25.1.1"
	androidAPIKey    = "API-Key: example-api-key"
	androidTraceID   = "uber-trace-id: 9F3A61C2:0053444B:0:01"
)

var (
	androidGET = []string{"Authorization: Bearer {token}", "Accept: application/vnd.api+json",
		"Content-Type: application/vnd.api+json", androidAPIKey, androidTraceID, androidUserAgent,
		"Host: {host}", "Connection: Keep-Alive", "Accept-Encoding: gzip"}
	androidPUT = []string{"Authorization: Bearer {token}", "Accept: application/json", androidAPIKey, androidTraceID,
		androidUserAgent, "Content-Type: application/json", "Content-Length: {length}",
		"Host: {host}", "Connection: Keep-Alive", "Accept-Encoding: gzip"}
)

// The iOS SDK (pace/cloud-sdk-ios). UserAPIRequest.swift:85-117
// (createURLRequest) sets Accept to the request's content type,
// "application/json" (UserAPIRequest.swift:17), and Content-Type only on a
// request with a body; the headerParameters of UserAPIGetUserAttributes.swift
// and UserAPISetUserAttributes.swift add Authorization; UserAPIClient.swift
// adds the defaultHeaders that PACECloudSDK+API.swift:22 sets, User-Agent
// (Constants+UserAgent.swift); URLSession adds Host, Accept-Language,
// Accept-Encoding and Connection. UserAPISetUserAttributes.swift:28 encodes
// the body with JSONEncoder over AnyCodable, which escapes "/" as "\/" and
// writes the dictionary's members in its own order.
const iosUserAgent = "User-Agent: ExampleApp/3.2.0 (iOS 17.5) Cloud-SDK/26.2.1 IdentityManagement/pace Cloud-SDK-Theme/automatic"

var (
	iosGET = []string{"Host: {host}", "Accept: application/json", "Authorization: Bearer {token}", iosUserAgent,
		"Accept-Language: de-DE,de;q=0.9", "Accept-Encoding: gzip, deflate, br", "Connection: keep-alive"}
	iosPUT = []string{"Host: {host}", "Content-Type: application/json", "Accept: application/json",
		"Authorization: Bearer {token}", iosUserAgent, "Accept-Language: de-DE,de;q=0.9", "Content-Length: {length}",
		"Accept-Encoding: gzip, deflate, br", "Connection: keep-alive"}
)

// sdkExchanges are the requests of both SDKs on version 2024-2, the one
// they call, in an order whose effects build on each other. The Android
// bodies are Kotlin Map<String, Any> encoded by Moshi, which leaves "/" as
// it is and null entries out.
var sdkExchanges = []sdkExchange{
	{name: "android GET of a new user", method: "GET", headers: androidGET, status: 200, want: map[string]any{}},
	{name: "android PUT of a Map<String, Any>", method: "PUT", headers: androidPUT,
		body: `{"referred":"false","tos_accepted":"true","theme":"dunkel – grün"}`, status: 204},
	{name: "android GET", method: "GET", headers: androidGET,
		status: 200, want: map[string]any{"referred": "false", "tos_accepted": "true", "theme": "dunkel – grün"}},
	{name: "android PUT of a Boolean is refused with a hint", method: "PUT", headers: androidPUT,
		body: `{"tos_accepted":true}`, status: 422, code: "invalid-attribute", detail: `send the value as a string, e.g. "true"`},
	// Moshi leaves null entries of a Kotlin map out: Android apps remove
	// with an empty list.
	{name: "android PUT of an empty list removes", method: "PUT", headers: androidPUT, body: `{"theme":[]}`, status: 204},
	{name: "android PUT of a reserved name is refused", method: "PUT", headers: androidPUT,
		body: `{"data":"x"}`, status: 422, code: "attribute-reserved", detail: "reserved"},
	{name: "ios PUT of a [String: Any]", method: "PUT", headers: iosPUT,
		body: `{"tos_accepted":"true","onboarding_url":"https:\/\/app.example\/welcome","langs":["de","en"]}`, status: 204},
	{name: "ios PUT of a number is refused with a hint", method: "PUT", headers: iosPUT,
		body: `{"launches":1}`, status: 422, code: "invalid-attribute", detail: `send the value as a string, e.g. "1"`},
	{name: "ios PUT of null removes", method: "PUT", headers: iosPUT, body: `{"referred":null}`, status: 204},
	{name: "ios GET", method: "GET", headers: iosGET,
		status: 200, want: map[string]any{"tos_accepted": "true", "onboarding_url": "https://app.example/welcome",
			"langs": []any{"de", "en"}}},
}

// replaySDKs sends every SDK exchange byte for byte over a connection of
// its own to base (http://host:port) with token, and checks each answer the
// way the SDK decodes it: a JSON object on 200 (through the iOS SDK's
// decoding too), JSON:API errors whose status is a string, 204 with no
// body.
func replaySDKs(t *testing.T, base, token string) {
	t.Helper()
	replay(t, base, token, sdkExchanges)
}

// replay sends exchanges as replaySDKs does.
func replay(t *testing.T, base, token string, exchanges []sdkExchange) {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	for _, ex := range exchanges {
		fill := strings.NewReplacer("{host}", u.Host, "{token}", token, "{length}", strconv.Itoa(len(ex.body)))
		var req strings.Builder
		req.WriteString(ex.method + " /user/2024-2/attributes HTTP/1.1\r\n")
		for _, h := range ex.headers {
			req.WriteString(fill.Replace(h) + "\r\n")
		}
		req.WriteString("\r\n" + ex.body)

		conn, err := net.DialTimeout("tcp", u.Host, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(conn, req.String()); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("%s: %v", ex.name, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		conn.Close()

		if resp.StatusCode != ex.status {
			t.Fatalf("%s: %d %s, want %d", ex.name, resp.StatusCode, body, ex.status)
		}
		switch {
		case ex.status == 204:
			if len(body) != 0 {
				t.Errorf("%s: 204 with a body %q", ex.name, body)
			}
		case ex.status == 200:
			sdkdecode.CheckIOS(t, body)
			var got map[string]any
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatalf("%s: not a JSON object: %s", ex.name, body)
			}
			if g, w := mustMarshal(t, got), mustMarshal(t, ex.want); g != w {
				t.Errorf("%s: %s, want %s", ex.name, g, w)
			}
		default:
			var doc struct {
				Errors []struct {
					ID, Code, Title, Detail string
					Status                  json.RawMessage
					Source                  struct{ Pointer string }
				}
			}
			if err := json.Unmarshal(body, &doc); err != nil || len(doc.Errors) != 1 {
				t.Fatalf("%s: not a JSON:API error document: %s", ex.name, body)
			}
			e := doc.Errors[0]
			if string(e.Status) != `"`+strconv.Itoa(ex.status)+`"` || e.Code != ex.code || !strings.Contains(e.Detail, ex.detail) ||
				e.Source.Pointer == "" || e.ID != resp.Header.Get("Request-Id") {
				t.Errorf("%s: %s, want status %q, code %s, a detail with %s and a pointer", ex.name, body, strconv.Itoa(ex.status), ex.code, ex.detail)
			}
		}
	}
}

func mustMarshal(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The published SDKs call version 2024-2: their exact requests work against
// serve --dev.
func TestSDKRequests(t *testing.T) {
	dir := t.TempDir()
	p := startServe(t, dir, nil, "--dev", "--data-dir", dir)
	replaySDKs(t, p.url, mintToken(t, dir, "--sub", "sdk-user", "--data-dir", dir))
}

// The same requests against the Keycloak store, with a token of the realm.
func TestSDKRequestsOnKeycloak(t *testing.T) {
	kc := kctest.Shared(t)
	p := startOnKeycloak(t, kc)
	tok, _ := kc.Token(t, kc.NewUser(t), "user:attributes:read", "user:attributes:write")
	replaySDKs(t, p.url, tok)
}

// The SDKs' requests against an attribute policy, from an app whose azp
// may not write an entitlement nor read a partner's attribute: the 403 and
// the 422 are error documents the SDKs decode, and the GET holds only
// what the app may read.
func TestSDKRequestsAgainstAPolicy(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "policy.yaml")
	os.WriteFile(file, []byte("attributes:\n  - match: premium\n    write: []\n  - match: tos_accepted\n    enum: [\"true\", \"false\"]\n"+
		"  - match: partner_*\n    read: [partner-app]\n    write: [partner-app]\n"), 0o600)
	p := startServe(t, dir, nil, "--dev", "--data-dir", dir, "--attribute-policy", file)
	partner := mintToken(t, dir, "--sub", "sdk-user", "--client", "partner-app", "--data-dir", dir)
	if status, body := call(t, "PUT", p.url+"/user/2024-3/attributes", partner, `{"partner_points":"12"}`, "Content-Type", "application/json"); status != 204 {
		t.Fatalf("the partner's PUT: %d %s", status, body)
	}
	replay(t, p.url, mintToken(t, dir, "--sub", "sdk-user", "--client", "example-app", "--data-dir", dir), []sdkExchange{
		{name: "ios PUT of an entitlement is refused", method: "PUT", headers: iosPUT, body: `{"premium":"true"}`,
			status: 403, code: "attribute-read-only", detail: "may not write"},
		{name: "android PUT of an entitlement is refused", method: "PUT", headers: androidPUT, body: `{"premium":"true"}`,
			status: 403, code: "attribute-read-only", detail: "may not write"},
		{name: "android PUT of a value outside the enum", method: "PUT", headers: androidPUT, body: `{"tos_accepted":"maybe"}`,
			status: 422, code: "invalid-attribute", detail: `rule 2 (match "tos_accepted") of the attribute policy`},
		{name: "ios PUT of a value in the enum", method: "PUT", headers: iosPUT, body: `{"tos_accepted":"true"}`, status: 204},
		{name: "ios GET without the partner's attribute", method: "GET", headers: iosGET, status: 200, want: map[string]any{"tos_accepted": "true"}},
		{name: "android GET without the partner's attribute", method: "GET", headers: androidGET, status: 200, want: map[string]any{"tos_accepted": "true"}},
	})
}

// --api-versions serves further versions, and only those listed.
func TestAPIVersions(t *testing.T) {
	dir := t.TempDir()
	p := startServe(t, dir, []string{"USERATTRS_API_VERSIONS=2024-2,2026-1"}, "--dev", "--data-dir", dir)
	tok := mintToken(t, dir, "--sub", "alice", "--data-dir", dir)
	for version, want := range map[string]int{"2024-2": 200, "2026-1": 200, "2025-1": 404, "2026-2": 404} {
		if status, body := call(t, "GET", p.url+"/user/"+version+"/attributes", tok, ""); status != want {
			t.Errorf("GET on %s: %d %s, want %d", version, status, body, want)
		}
	}
}
