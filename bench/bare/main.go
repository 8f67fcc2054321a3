// Command bare is the benchmark's speed limit: a bare net/http server on the
// routes of the API, with a fixed body for GET and a read body and 204 for
// PUT, and none of the service's work.
package main

import (
	"flag"
	"io"
	"log"
	"net/http"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "address to listen on")
	flag.Parse()
	body := []byte(`{"referred":"false","tos_accepted":"true"}`)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /user/{version}/attributes", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	})
	mux.HandleFunc("PUT /user/{version}/attributes", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /health/liveness", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("OK\n")) })
	log.Fatal(http.ListenAndServe(*addr, mux))
}
