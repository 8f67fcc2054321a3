// Package testmain ends the run of a test binary whose tests start shared
// servers: every such binary stops the same servers and scans its logs the
// same way.
package testmain

import (
	"github.com/userattrs/userattrs/internal/faulttest"
	"github.com/userattrs/userattrs/internal/kctest"
	"github.com/userattrs/userattrs/internal/oidctest"
	"github.com/userattrs/userattrs/internal/pgtest"
	"github.com/userattrs/userattrs/internal/testutil"
)

// Finish stops every server the binary's tests may have started
// (PostgreSQL, Keycloak, Toxiproxy) and, given a scan, fails the run when
// anything the tests logged holds a secret they sent, the shared test
// servers' own secrets included. It returns the exit code.
func Finish(code int, scan *testutil.LogScan) int {
	pgtest.Cleanup()
	kctest.Cleanup()
	faulttest.Cleanup()
	if scan == nil {
		return code
	}
	scan.Secrets.Add(oidctest.IntrospectionSecret)
	scan.Secrets.Add(kctest.Secrets()...)
	return scan.Check(code)
}
