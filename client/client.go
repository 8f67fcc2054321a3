// Package client calls the userattrs API from Go backends: the
// self-service routes with a user's token, and the admin routes (read,
// merge, history, export, erase) with a service account's. It turns the
// API's JSON:API errors into *Error values, retries what the service asks
// to be retried (429, 503, after Retry-After), offers the read-modify-
// write loop that If-Match makes safe, and checks change events' webhook
// signatures for receivers.
//
// Tokens come from the *http.Client it is given: ClientCredentials for a
// service account (golang.org/x/oauth2/clientcredentials), StaticToken
// for a token at hand.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// Config configures a Client.
type Config struct {
	// URL is where the service is, such as https://users.example.com.
	URL string
	// HTTPClient sends the requests and adds their token
	// (ClientCredentials, StaticToken).
	HTTPClient *http.Client
	// Version is the API version of the self-service routes (default
	// DefaultVersion).
	Version string
	// Retries is how many times a request the service answered 429 or 503
	// is sent again (default 3; -1: never).
	Retries int
	// MaxWait bounds the wait before one retry, whatever Retry-After says
	// (default 30s).
	MaxWait time.Duration
}

// DefaultVersion is the API version the self-service calls use unless
// Config.Version says otherwise.
const DefaultVersion = "2025-1"

// Me, as the user of Get, Merge and Update, is the token's own user,
// through the self-service routes; any other id goes through the admin
// routes.
const Me = ""

// Client calls one userattrs service. It is safe for concurrent use.
type Client struct {
	base    *url.URL
	http    *http.Client
	version string
	retries int
	maxWait time.Duration
}

// New returns a client of the service at cfg.URL.
func New(cfg Config) (*Client, error) {
	u, err := url.Parse(strings.TrimSuffix(cfg.URL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("client: %q is not an http or https URL", cfg.URL)
	}
	c := &Client{base: u, http: cfg.HTTPClient, version: cfg.Version, retries: cfg.Retries, maxWait: cfg.MaxWait}
	if c.http == nil {
		c.http = http.DefaultClient
	}
	if c.version == "" {
		c.version = DefaultVersion
	}
	switch {
	case c.retries == 0:
		c.retries = 3
	case c.retries < 0:
		c.retries = 0
	}
	if c.maxWait <= 0 {
		c.maxWait = 30 * time.Second
	}
	return c, nil
}

// ClientCredentials returns an HTTP client whose requests carry a service
// account's token, fetched from tokenURL with the client credentials
// grant and renewed before it expires.
func ClientCredentials(ctx context.Context, tokenURL, clientID, clientSecret string, scopes ...string) *http.Client {
	cfg := clientcredentials.Config{ClientID: clientID, ClientSecret: clientSecret, TokenURL: tokenURL, Scopes: scopes}
	return cfg.Client(ctx)
}

// StaticToken returns an HTTP client whose requests carry token.
func StaticToken(ctx context.Context, token string) *http.Client {
	return oauth2.NewClient(ctx, oauth2.StaticTokenSource(&oauth2.Token{AccessToken: token, TokenType: "Bearer"}))
}

// attributesPath is the path of user's attributes: the self-service route
// for Me, the admin route for anyone else.
func (c *Client) attributesPath(user string) string {
	if user == Me {
		return "/user/" + url.PathEscape(c.version) + "/attributes"
	}
	return adminPath(user, "attributes")
}

func adminPath(user, rest string) string { return "/admin/users/" + url.PathEscape(user) + "/" + rest }

// errNoUser is what the admin-only calls answer for Me: they name a user.
var errNoUser = errors.New("client: this call is the admin API's and needs a user id, not client.Me")

// request is one call of the API.
type request struct {
	method, path string
	query        url.Values
	body         []byte // sent as application/json when not nil
	header       http.Header
}

// do sends req, again while the service answers 429 or 503 and retries
// are left, and returns the response of the last attempt when its status
// is 2xx or 304; anything else is an *Error. The caller closes the body.
func (c *Client) do(ctx context.Context, req request) (*http.Response, error) {
	// Paths come escaped (url.PathEscape of the user id).
	u, err := url.Parse(c.base.String() + req.path)
	if err != nil {
		return nil, err
	}
	u.RawQuery = req.query.Encode()
	for attempt := 0; ; attempt++ {
		var body io.Reader
		if req.body != nil {
			body = bytes.NewReader(req.body)
		}
		r, err := http.NewRequestWithContext(ctx, req.method, u.String(), body)
		if err != nil {
			return nil, err
		}
		for k, vs := range req.header {
			r.Header[k] = vs
		}
		if req.body != nil {
			r.Header.Set("Content-Type", "application/json")
		}
		res, err := c.http.Do(r)
		if err != nil {
			return nil, err
		}
		if res.StatusCode < 300 || res.StatusCode == http.StatusNotModified {
			return res, nil
		}
		apiErr := readError(res)
		if attempt >= c.retries || (res.StatusCode != http.StatusTooManyRequests && res.StatusCode != http.StatusServiceUnavailable) {
			return nil, apiErr
		}
		if err := sleep(ctx, c.wait(apiErr.RetryAfter, attempt)); err != nil {
			return nil, apiErr
		}
	}
}

// wait is how long to wait before retry attempt+1: what the service asked
// for, or else a backoff with jitter, within MaxWait.
func (c *Client) wait(retryAfter time.Duration, attempt int) time.Duration {
	if retryAfter > 0 {
		return min(retryAfter, c.maxWait)
	}
	backoff := 100 * time.Millisecond << min(attempt, 8)
	return min(backoff/2+rand.N(backoff/2+1), c.maxWait)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// retryAfter reads Retry-After: seconds, or an HTTP date.
func retryAfter(h http.Header) time.Duration {
	v := h.Get("Retry-After")
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0)
	}
	return 0
}

// decode reads a JSON response into v and closes it.
func decode(res *http.Response, v any) error {
	defer res.Body.Close()
	if err := json.NewDecoder(io.LimitReader(res.Body, maxResponse)).Decode(v); err != nil {
		return fmt.Errorf("client: %s %s: the response is not what the API documents: %w", res.Request.Method, res.Request.URL.Path, err)
	}
	return nil
}

// maxResponse bounds what the client reads of one response: an export of
// a user at the history's bounds is a few MiB.
const maxResponse = 64 << 20
