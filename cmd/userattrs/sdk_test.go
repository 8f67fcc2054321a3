package main

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/userattrs/userattrs/internal/kctest"
)

// sdkExchange is one request of a published PACE SDK, as its generated code
// sends it, and what the SDK needs of the answer.
type sdkExchange struct {
	name   string
	method string
	// header lines after the request line, in the SDK's order; Host,
	// Authorization and Content-Length are added.
	headers []string
	body    string
	status  int
	// for a 200: the attributes the JSON object must hold afterwards; for
	// an error: its code, and text its detail must contain.
	want   map[string]any
	code   string
	detail string
}

const (
	// OkHttp, under Retrofit with the Moshi converter (Android).
	okHTTP = "okhttp/4.12.0"
	// URLSession (iOS).
	cfNetwork = "PACECloudSDK/1 CFNetwork/1498.700.2 Darwin/23.6.0"
)

// sdkExchanges are the requests of the Android SDK (cloud.pace.sdk.api.user,
// GetUserAttributesAPI and SetUserAttributesAPI: Kotlin Map<String, Any>
// bodies encoded by Moshi) and of the iOS SDK (UserAPI: [String: Any]
// bodies encoded by JSONSerialization, which escapes "/" and orders keys as
// the dictionary does), both on version 2024-2, in an order whose effects
// build on each other.
var sdkExchanges = []sdkExchange{
	{name: "android GET of a new user", method: "GET",
		headers: []string{"Accept: application/vnd.api+json", "Content-Type: application/vnd.api+json",
			"Connection: Keep-Alive", "Accept-Encoding: gzip", "User-Agent: " + okHTTP},
		status: 200, want: map[string]any{}},
	{name: "android PUT of a Map<String, Any>", method: "PUT",
		headers: []string{"Content-Type: application/json; charset=UTF-8", "Connection: Keep-Alive",
			"Accept-Encoding: gzip", "User-Agent: " + okHTTP},
		body: `{"referred":"false","tos_accepted":"true","theme":"dunkel – grün"}`, status: 204},
	{name: "android GET", method: "GET",
		headers: []string{"Accept: application/vnd.api+json", "Content-Type: application/vnd.api+json",
			"Connection: Keep-Alive", "Accept-Encoding: gzip", "User-Agent: " + okHTTP},
		status: 200, want: map[string]any{"referred": "false", "tos_accepted": "true", "theme": "dunkel – grün"}},
	{name: "android PUT of a Boolean is refused with a hint", method: "PUT",
		headers: []string{"Content-Type: application/json; charset=UTF-8", "Connection: Keep-Alive",
			"Accept-Encoding: gzip", "User-Agent: " + okHTTP},
		body: `{"tos_accepted":true}`, status: 422, code: "invalid-attribute", detail: `send the value as a string, e.g. "true"`},
	// Moshi leaves null entries of a Kotlin map out: Android apps remove
	// with an empty list.
	{name: "android PUT of an empty list removes", method: "PUT",
		headers: []string{"Content-Type: application/json; charset=UTF-8", "Connection: Keep-Alive",
			"Accept-Encoding: gzip", "User-Agent: " + okHTTP},
		body: `{"theme":[]}`, status: 204},
	{name: "ios PUT of a [String: Any]", method: "PUT",
		headers: []string{"Content-Type: application/json", "Accept: application/json", "Accept-Language: de-DE;q=1.0",
			"Accept-Encoding: gzip, deflate, br", "User-Agent: " + cfNetwork},
		body: `{"tos_accepted":"true","onboarding_url":"https:\/\/app.example\/welcome","langs":["de","en"]}`, status: 204},
	{name: "ios PUT of a number is refused with a hint", method: "PUT",
		headers: []string{"Content-Type: application/json", "Accept: application/json", "Accept-Language: de-DE;q=1.0",
			"Accept-Encoding: gzip, deflate, br", "User-Agent: " + cfNetwork},
		body: `{"launches":1}`, status: 422, code: "invalid-attribute", detail: `send the value as a string, e.g. "1"`},
	{name: "ios PUT of null removes", method: "PUT",
		headers: []string{"Content-Type: application/json", "Accept: application/json", "Accept-Language: de-DE;q=1.0",
			"Accept-Encoding: gzip, deflate, br", "User-Agent: " + cfNetwork},
		body: `{"referred":null}`, status: 204},
	{name: "ios GET", method: "GET",
		headers: []string{"Accept: application/vnd.api+json", "Content-Type: application/vnd.api+json",
			"Accept-Language: de-DE;q=1.0", "Accept-Encoding: gzip, deflate, br", "User-Agent: " + cfNetwork},
		status: 200, want: map[string]any{"tos_accepted": "true", "onboarding_url": "https://app.example/welcome",
			"langs": []any{"de", "en"}}},
}

// replaySDKs sends every SDK exchange byte for byte over a connection of
// its own to base (http://host:port) with token, and checks each answer the
// way the SDK decodes it: a JSON object on 200, JSON:API errors whose
// status is a string, 204 with no body.
func replaySDKs(t *testing.T, base, token string) {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	for _, ex := range sdkExchanges {
		var req strings.Builder
		req.WriteString(ex.method + " /user/2024-2/attributes HTTP/1.1\r\n")
		req.WriteString("Host: " + u.Host + "\r\n")
		req.WriteString("Authorization: Bearer " + token + "\r\n")
		for _, h := range ex.headers {
			req.WriteString(h + "\r\n")
		}
		if ex.method == "PUT" {
			req.WriteString("Content-Length: " + strconv.Itoa(len(ex.body)) + "\r\n")
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
