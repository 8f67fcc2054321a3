package events

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// MinSecretBytes is the least a webhook secret may hold, decoded: what
// Standard Webhooks recommends.
const MinSecretBytes = 24

// Webhook posts each event to a URL, signed as Standard Webhooks
// (standardwebhooks.com) signs: webhook-id (the event's id),
// webhook-timestamp and webhook-signature, "v1,<base64 HMAC-SHA256 of
// id.timestamp.body>" for each secret, so that receivers can tell a
// replayed delivery by its id and age, and secrets can be rotated without
// a delivery that no receiver can check. Any 2xx answer means delivered;
// a redirect is never followed.
type Webhook struct {
	url     string
	signers []*standardwebhooks.Webhook
	client  *http.Client
}

// WebhookKind is the webhook sink's row in the table of sinks.
func WebhookKind() SinkKind {
	return SinkKind{Name: "webhook", Flags: func(fs *flag.FlagSet) SinkConfig {
		c := &webhookConfig{}
		fs.StringVar(&c.url, "events-webhook-url", "", "POST change events to this URL, signed with --events-webhook-secret")
		fs.StringVar(&c.secret, "events-webhook-secret", "",
			"comma-separated Standard Webhooks secrets (whsec_ and the base64 of at least 24 random bytes); every delivery is signed "+
				"with each, so that a secret can be rotated (prefer USERATTRS_EVENTS_WEBHOOK_SECRET)")
		return c
	}}
}

type webhookConfig struct {
	url, secret string
	signers     []*standardwebhooks.Webhook // read from secret by Check
}

func (c *webhookConfig) On() bool { return c.url != "" }

func (c *webhookConfig) Check() error {
	u, err := url.Parse(c.url)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return errors.New("--events-webhook-url must be an http or https URL")
	}
	if c.secret == "" {
		return errors.New("--events-webhook-url needs --events-webhook-secret, so that receivers can check each event")
	}
	if c.signers, err = ParseSecrets(c.secret); err != nil {
		return fmt.Errorf("--events-webhook-secret: %w", err)
	}
	return nil
}

func (c *webhookConfig) Open() (Sink, error) { return NewWebhook(c.url, c.signers), nil }

// ParseSecrets reads a comma-separated list of secrets of the form
// whsec_<base64>, each of at least MinSecretBytes. Every delivery is
// signed with each: during a rotation, list the new secret beside the old,
// then drop the old once every receiver knows the new.
func ParseSecrets(list string) ([]*standardwebhooks.Webhook, error) {
	var signers []*standardwebhooks.Webhook
	for i, secret := range strings.Split(list, ",") {
		secret = strings.TrimSpace(secret)
		key, err := base64Secret(secret)
		if err != nil || len(key) < MinSecretBytes {
			return nil, fmt.Errorf("webhook secret %d of %d is not whsec_ and the base64 of at least %d random bytes",
				i+1, strings.Count(list, ",")+1, MinSecretBytes)
		}
		signer, err := standardwebhooks.NewWebhookRaw(key)
		if err != nil {
			return nil, err
		}
		signers = append(signers, signer)
	}
	return signers, nil
}

// NewWebhook returns a sink that posts to url, signing with every secret of
// ParseSecrets.
func NewWebhook(url string, signers []*standardwebhooks.Webhook) *Webhook {
	// Keep a connection per user the dispatcher sends for at once, rather
	// than the default two.
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = 64
	return &Webhook{url: url, signers: signers, client: &http.Client{
		Transport: transport,
		// A redirect would turn the POST into a GET without the event,
		// which a login page or an http-to-https hop answers 200: the
		// event would count as delivered, and be lost.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

func (w *Webhook) Name() string { return "webhook" }

// Sign returns the webhook-signature header's value for an event's id and
// body at the given time.
func (w *Webhook) Sign(id string, at time.Time, body []byte) (string, error) {
	signatures := make([]string, 0, len(w.signers))
	for _, s := range w.signers {
		sig, err := s.Sign(id, at, body)
		if err != nil {
			return "", err
		}
		signatures = append(signatures, sig)
	}
	return strings.Join(signatures, " "), nil
}

func (w *Webhook) Send(ctx context.Context, e Event) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(e.Body))
	if err != nil {
		return err
	}
	now := time.Now()
	signature, err := w.Sign(e.ID, now, e.Body)
	if err != nil {
		return err
	}
	h := req.Header
	h.Set("Content-Type", "application/cloudevents+json; charset=utf-8")
	h[standardwebhooks.HeaderWebhookID] = []string{e.ID}
	h[standardwebhooks.HeaderWebhookTimestamp] = []string{strconv.FormatInt(now.Unix(), 10)}
	h[standardwebhooks.HeaderWebhookSignature] = []string{signature}
	h.Set("Ce-Id", e.ID)
	if e.TraceParent != "" {
		h.Set("Traceparent", e.TraceParent)
	}
	resp, err := w.client.Do(req)
	if err != nil {
		// Without the URL, which may hold a token of the receiver's
		// (logs show this error).
		var uerr *url.Error
		if errors.As(err, &uerr) {
			return fmt.Errorf("webhook: %w", uerr.Err)
		}
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch {
	case resp.StatusCode >= 300 && resp.StatusCode <= 399:
		return refused("webhook answered %d, a redirect to %s, which is not followed: configure the URL it points to",
			resp.StatusCode, redirectTarget(resp.Header.Get("Location")))
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		return refused("webhook answered %d", resp.StatusCode)
	}
	return nil
}

// redirectTarget names where a redirect points, for the log, without what
// may be secret in it: credentials and the query.
func redirectTarget(location string) string {
	u, err := url.Parse(location)
	if err != nil || location == "" {
		return "an unreadable location"
	}
	u.User, u.RawQuery, u.Fragment = nil, "", ""
	return strconv.Quote(u.String())
}

func (w *Webhook) Close() error {
	w.client.CloseIdleConnections()
	return nil
}

// base64Secret decodes a secret of the form whsec_<base64>.
func base64Secret(secret string) ([]byte, error) {
	b64, ok := strings.CutPrefix(secret, "whsec_")
	if !ok {
		return nil, errors.New("no whsec_ prefix")
	}
	return base64.StdEncoding.DecodeString(b64)
}
