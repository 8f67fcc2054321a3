// An app developer's use of the Go client that openapi-generator makes from
// api/openapi.yaml. It prints one line per step, which the test compares
// with what it expects.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"os"

	client "github.com/userattrs/client"
	"golang.org/x/oauth2"
)

func show(step string, value any) {
	b, err := json.Marshal(value) // maps marshal with sorted keys
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(step, string(b))
}

func main() {
	cfg := client.NewConfiguration()
	cfg.Servers = client.ServerConfigurations{{URL: os.Getenv("USERATTRS_URL")}}
	api := client.NewAPIClient(cfg).DefaultAPI
	ctx := context.WithValue(context.Background(), client.ContextOAuth2,
		oauth2.StaticTokenSource(&oauth2.Token{AccessToken: os.Getenv("USERATTRS_TOKEN")}))
	version := os.Getenv("USERATTRS_VERSION")

	must := func(_ any, err error) {
		if err != nil {
			log.Fatal(err)
		}
	}
	must(api.PutAttributes(ctx, version).RequestBody(map[string]any{"theme": "dark"}).Execute())
	show("put-string", "ok")
	must(api.PutAttributes(ctx, version).RequestBody(map[string]any{"langs": []string{"de", "en"}}).Execute())
	show("put-list", "ok")
	got, resp, err := api.GetAttributes(ctx, version).Execute()
	if err != nil {
		log.Fatal(err)
	}
	show("get", got)
	etag := resp.Header.Get("ETag")
	must(api.PutAttributes(ctx, version).RequestBody(map[string]any{"theme": nil}).IfMatch(etag).Execute())
	show("remove-if-match", "ok")
	got, _, err = api.GetAttributes(ctx, version).Execute()
	if err != nil {
		log.Fatal(err)
	}
	show("get", got)
	resp, err = api.PutAttributes(ctx, version).RequestBody(map[string]any{"theme": "light"}).IfMatch(etag).Execute()
	if err == nil {
		show("stale-if-match", "accepted")
		return
	}
	show("stale-if-match", resp.StatusCode)
}
