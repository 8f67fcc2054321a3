// Command bare is the benchmark's speed limit: a bare net/http server on the
// routes of the API, with a fixed body for GET and a read body and 204 for
// PUT, and none of the service's work. A GET with X-Bench-Attributes: N is
// answered with the body the service sends for a user of the benchmark's
// N attributes, so that reads of large users have a limit of their own.
package main

import (
	"flag"
	"io"
	"log"
	"net/http"
	"strconv"

	"github.com/userattrs/userattrs/bench/workload"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "address to listen on")
	flag.Parse()
	bodies := map[string][]byte{"": []byte(`{"referred":"false","tos_accepted":"true"}`)}
	for _, n := range workload.Sizes {
		bodies[strconv.Itoa(n)] = workload.SizedBody(n)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /user/{version}/attributes", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(bodies[r.Header.Get(workload.SizeHeader)])
	})
	mux.HandleFunc("PUT /user/{version}/attributes", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /health/liveness", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("OK\n")) })
	log.Fatal(http.ListenAndServe(*addr, mux))
}
