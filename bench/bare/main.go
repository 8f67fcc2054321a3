// Command bare is the benchmark's speed limits: net/http servers on the
// routes of the API that do only the work no implementation can avoid.
//
//   - By default, a bare handler: a fixed body for GET, a read body and 204
//     for PUT. A GET with X-Bench-Attributes: N is answered with the body
//     the service sends for a user of the benchmark's N attributes, so that
//     reads of large users have a limit of their own.
//   - With -durable FILE, the durable limit: each PUT's body is appended to
//     FILE and acknowledged once an fsync has put it on disk, one fsync for
//     every PUT that arrived while the last one ran (group commit). The most
//     a durable acknowledged write can do on this disk, whatever the
//     database.
//   - With -verify-read DB -key-dir DIR, the verify-and-read limit: a GET
//     verifies its Ed25519 JWT (the development key in DIR) with
//     crypto/ed25519 and minimal parsing, then reads the user's rows from
//     the SQLite database DB with one prepared statement. The least work a
//     correct first-seen GET of a user outside every cache can do.
package main

import (
	"bytes"
	"crypto/ed25519"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"flag"
	"io"
	"log"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	_ "modernc.org/sqlite"

	"github.com/userattrs/userattrs/auth"
	"github.com/userattrs/userattrs/bench/workload"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "address to listen on")
	durable := flag.String("durable", "", "append each PUT body to this file, acknowledged after a group-committed fsync")
	verifyRead := flag.String("verify-read", "", "a SQLite database: each GET verifies its token and reads the user's rows from it")
	keyDir := flag.String("key-dir", "", "with -verify-read: the directory of the development key that signed the tokens")
	flag.Parse()
	bodies := map[string][]byte{"": []byte(`{"referred":"false","tos_accepted":"true"}`)}
	for _, n := range workload.Sizes {
		bodies[strconv.Itoa(n)] = workload.SizedBody(n)
	}
	get := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(bodies[r.Header.Get(workload.SizeHeader)])
	}
	put := func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	}
	if *durable != "" {
		f, err := os.OpenFile(*durable, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			log.Fatal(err)
		}
		l := &durableLog{f: f}
		l.synced.L = &l.mu
		put = func(w http.ResponseWriter, r *http.Request) {
			body, err := io.ReadAll(r.Body)
			if err == nil {
				err = l.append(body)
			}
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			w.WriteHeader(http.StatusNoContent)
		}
	}
	if *verifyRead != "" {
		key, err := auth.LoadDevKey(*keyDir)
		if err != nil {
			log.Fatal(err)
		}
		db, err := sql.Open("sqlite", "file:"+*verifyRead+"?mode=ro&_pragma=query_only(1)")
		if err != nil {
			log.Fatal(err)
		}
		db.SetMaxOpenConns(8)
		db.SetMaxIdleConns(8)
		rows, err := db.Prepare(`SELECT name, "values" FROM user_attribute WHERE user_id = ?`)
		if err != nil {
			log.Fatal(err)
		}
		get = verifyAndRead(key.PublicKey(), rows)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /user/{version}/attributes", get)
	mux.HandleFunc("PUT /user/{version}/attributes", put)
	mux.HandleFunc("GET /health/liveness", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("OK\n")) })
	log.Fatal(http.ListenAndServe(*addr, mux))
}

// durableLog appends bodies to a file and returns once they are on disk:
// one fsync at a time, each covering every append made before it began.
type durableLog struct {
	mu      sync.Mutex
	synced  sync.Cond // on mu: signalled after each fsync
	f       *os.File
	written uint64 // appends made
	onDisk  uint64 // appends an fsync has covered
	syncing bool
	err     error
}

func (l *durableLog) append(body []byte) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, err := l.f.Write(append(body, '\n')); err != nil {
		return err
	}
	l.written++
	mine := l.written
	for l.onDisk < mine && l.err == nil {
		if l.syncing {
			l.synced.Wait()
			continue
		}
		l.syncing = true
		covers := l.written
		l.mu.Unlock()
		err := l.f.Sync()
		l.mu.Lock()
		l.syncing, l.err = false, err
		if err == nil {
			l.onDisk = covers
		}
		l.synced.Broadcast()
	}
	return l.err
}

// verifyAndRead answers a GET after checking its bearer token's Ed25519
// signature and expiry, with the user's rows read by stmt.
func verifyAndRead(pub ed25519.PublicKey, stmt *sql.Stmt) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		dot := strings.LastIndexByte(tok, '.')
		first := strings.IndexByte(tok, '.')
		if !ok || dot < 0 || first == dot {
			http.Error(w, "no token", http.StatusUnauthorized)
			return
		}
		sig, err := base64.RawURLEncoding.DecodeString(tok[dot+1:])
		if err != nil || !ed25519.Verify(pub, []byte(tok[:dot]), sig) {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		payload, err := base64.RawURLEncoding.DecodeString(tok[first+1 : dot])
		var claims struct {
			Sub string `json:"sub"`
			Exp int64  `json:"exp"`
		}
		if err != nil || json.Unmarshal(payload, &claims) != nil || claims.Exp < time.Now().Unix() || claims.Sub == "" {
			http.Error(w, "bad claims", http.StatusUnauthorized)
			return
		}
		rows, err := stmt.QueryContext(r.Context(), claims.Sub)
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		defer rows.Close()
		var body bytes.Buffer
		body.WriteByte('{')
		var name, values string
		for n := 0; rows.Next(); n++ {
			if err := rows.Scan(&name, &values); err != nil {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
			if n > 0 {
				body.WriteByte(',')
			}
			body.WriteString(strconv.Quote(name))
			body.WriteByte(':')
			body.WriteString(values)
		}
		body.WriteByte('}')
		w.Header().Set("Content-Type", "application/json")
		w.Write(body.Bytes())
	}
}
