package events

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
)

// SignatureHeader carries the HMAC-SHA256 of the body, keyed with the
// webhook secret, as "sha256=" and lowercase hex.
const SignatureHeader = "Userattrs-Signature"

// Webhook posts each event to a URL, signed; any 2xx answer means
// delivered.
type Webhook struct {
	url    string
	secret []byte
	client *http.Client
}

// NewWebhook returns a sink that posts to url, signing with secret.
func NewWebhook(url string, secret []byte) *Webhook {
	// Keep a connection per user the dispatcher sends for at once, rather
	// than the default two.
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = 64
	return &Webhook{url: url, secret: secret, client: &http.Client{Transport: transport}}
}

func (w *Webhook) Name() string { return "webhook" }

// Sign returns the signature header's value for body.
func Sign(secret, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

func (w *Webhook) Send(ctx context.Context, e Event) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(e.Body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/cloudevents+json; charset=utf-8")
	req.Header.Set(SignatureHeader, Sign(w.secret, e.Body))
	req.Header.Set("Ce-Id", e.ID)
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
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return refused("webhook answered %d", resp.StatusCode)
	}
	return nil
}

func (w *Webhook) Close() error {
	w.client.CloseIdleConnections()
	return nil
}
