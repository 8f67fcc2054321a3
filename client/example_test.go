package client_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/userattrs/userattrs/client"
)

// A backend reads and merges a user's attributes with its service
// account's token. In production the token comes from the identity
// provider: client.ClientCredentials(ctx, tokenURL, clientID, secret).
func Example() {
	ctx := context.Background()
	c, err := client.New(client.Config{URL: serviceURL, HTTPClient: client.StaticToken(ctx, adminToken)})
	if err != nil {
		panic(err)
	}
	if err := c.Merge(ctx, "user-1", client.Patch{"tos_accepted": {"2026-01"}, "langs": {"fr", "en"}}, ""); err != nil {
		panic(err)
	}
	attrs, _, err := c.Get(ctx, "user-1")
	if err != nil {
		panic(err)
	}
	fmt.Println(attrs["tos_accepted"], attrs["langs"])
	// Output: [2026-01] [fr en]
}

// Update is a read-modify-write that If-Match makes safe: a counter
// incremented from several places loses no increment.
func ExampleClient_Update() {
	ctx := context.Background()
	c, _ := client.New(client.Config{URL: serviceURL, HTTPClient: client.StaticToken(ctx, adminToken)})
	for range 3 {
		err := c.Update(ctx, "user-2", func(current client.Attributes) (client.Patch, error) {
			n := 0
			if v := current["logins"]; len(v) == 1 {
				n, _ = strconv.Atoi(v[0])
			}
			return client.Patch{"logins": {strconv.Itoa(n + 1)}}, nil
		})
		if err != nil {
			panic(err)
		}
	}
	attrs, _, _ := c.Get(ctx, "user-2")
	fmt.Println(attrs["logins"])
	// Output: [3]
}

// Errors are *client.Error values: test them with errors.Is, and quote
// their request id to the service's operators.
func ExampleError() {
	ctx := context.Background()
	c, _ := client.New(client.Config{URL: serviceURL, HTTPClient: client.StaticToken(ctx, adminToken)})
	err := c.Merge(ctx, "user-3", client.Patch{"plan": {"pro"}}, `"an-old-etag"`)
	var apiErr *client.Error
	if errors.Is(err, client.ErrPreconditionFailed) && errors.As(err, &apiErr) {
		fmt.Println(apiErr.Status, apiErr.Code, apiErr.RequestID != "")
	}
	// Output: 412 precondition-failed true
}

// A user's own attributes, with the user's token, through the
// self-service routes.
func ExampleMe() {
	ctx := context.Background()
	c, _ := client.New(client.Config{URL: serviceURL, HTTPClient: client.StaticToken(ctx, aliceToken)})
	if err := c.Merge(ctx, client.Me, client.Patch{"onboarded": {"true"}}, ""); err != nil {
		panic(err)
	}
	attrs, _, _ := c.Get(ctx, client.Me)
	fmt.Println(attrs)
	// Output: map[onboarded:[true]]
}

// History pages through a user's changes, newest first.
func ExampleClient_History() {
	ctx := context.Background()
	c, _ := client.New(client.Config{URL: serviceURL, HTTPClient: client.StaticToken(ctx, adminToken)})
	for _, plan := range []string{"free", "pro", "team"} {
		c.Merge(ctx, "user-4", client.Patch{"plan": {plan}}, "")
	}
	for change, err := range c.History(ctx, "user-4", client.HistoryOptions{PageSize: 2}) {
		if err != nil {
			panic(err)
		}
		fmt.Println(change.Set["plan"], change.Actor.Type)
	}
	// Output:
	// [team] service-account
	// [pro] service-account
	// [free] service-account
}

// Export hands over everything kept of a user; Erase erases it, and leaves
// the record that it happened.
func ExampleClient_Erase() {
	ctx := context.Background()
	c, _ := client.New(client.Config{URL: serviceURL, HTTPClient: client.StaticToken(ctx, adminToken)})
	c.Merge(ctx, "user-5", client.Patch{"phone": {"+33 6 00 00 00 00"}}, "")
	before, _ := c.Export(ctx, "user-5")
	fmt.Println(len(before.Attributes), len(before.History))
	if err := c.Erase(ctx, "user-5"); err != nil {
		panic(err)
	}
	after, _ := c.Export(ctx, "user-5")
	fmt.Println(len(after.Attributes), len(after.History), len(after.Erasures))
	// Output:
	// 1 1
	// 0 0 1
}

// A webhook receiver checks each delivery's signature before it acts on
// the event; the erasure's event tells it to delete what it holds.
func ExampleVerifyWebhook() {
	const secret = "whsec_YS13ZWJob29rLXNlY3JldC1vZi10aGUtdGVzdHM="
	body := []byte(`{"specversion":"1.0","id":"e1","source":"/userattrs","type":"io.userattrs.user.erased.v1",` +
		`"subject":"user-5","time":"2026-01-02T03:04:05Z","data":{"id":"e1","user":"user-5"}}`)
	// What the service sends, signed as Standard Webhooks sign.
	wh, _ := standardwebhooks.NewWebhook(secret)
	now := time.Now()
	signature, _ := wh.Sign("e1", now, body)
	header := http.Header{"Webhook-Id": {"e1"}, "Webhook-Timestamp": {strconv.FormatInt(now.Unix(), 10)}, "Webhook-Signature": {signature}}

	e, err := client.VerifyWebhook([]string{secret}, header, body)
	if err != nil {
		fmt.Println("refused:", err) // answer 401, do nothing
		return
	}
	if e.Type == client.ErasedType {
		fmt.Println("delete everything of", e.Subject)
	}
	_, err = client.VerifyWebhook([]string{secret}, header, append(body, ' '))
	fmt.Println(errors.Is(err, client.ErrBadSignature))
	// Output:
	// delete everything of user-5
	// true
}

// The admin API's calls name a user: Me, the token's own user, is only
// for Get, Merge and Update.
func ExampleClient_Erase_me() {
	ctx := context.Background()
	c, _ := client.New(client.Config{URL: serviceURL, HTTPClient: client.StaticToken(ctx, aliceToken)})
	fmt.Println(c.Erase(ctx, client.Me))
	// Output: client: this call is the admin API's and needs a user id, not client.Me
}
