# The test command of the README and of CI: everything the suite needs, it
# sets up itself.
.PHONY: test run build image chart-test fuzz bench reliability

test:
	scripts/test-deps.sh
	go vet ./...
	go test -race -count=1 -timeout 20m ./...

run:
	go run ./cmd/userattrs serve --dev

build:
	go build -o bin/userattrs ./cmd/userattrs

# The OCI image, dist/userattrs-image.tar, and its SBOM, without a Docker
# engine (ko); VERSION=1.2.3 make image to name its version.
image:
	scripts/image.sh

# The chart in a real Kubernetes API server (with controllers, a scheduler
# and kwok's fake node): install, roll out, and a drain the budget refuses.
# Apart from make test: the control plane takes minutes to build.
chart-test:
	scripts/chart-test.sh

# Longer fuzzing than the seed corpora the test command runs, one target
# after another: FUZZTIME=10m for a campaign. What a target finds is written
# to its testdata/fuzz directory, and from then on the test command runs it.
FUZZTIME ?= 60s
FUZZTARGETS = FuzzDecodePatch:./server FuzzEncodeAttributes:./server FuzzEntityTags:./server \
	FuzzRequestID:./server FuzzValidate:. FuzzTokenClaims:./auth
fuzz:
	@for t in $(FUZZTARGETS); do \
		echo "== $${t%%:*}"; \
		go test -run '^$$' -fuzz "^$${t%%:*}$$" -fuzztime $(FUZZTIME) $(FUZZFLAGS) "$${t#*:}" || exit 1; \
	done

# The benchmark: the speed limit, userattrs on every store available, and
# Keycloak's own APIs, side by side; results in results/. Not a test.
bench:
	scripts/test-deps.sh
	go run ./bench

# The fault, failover and overload scenarios, each a test that CI runs
# too, here with every row of what they saw in one table (also in
# results/reliability.jsonl).
RELIABILITY_REPORT = $(CURDIR)/results/reliability.jsonl
reliability:
	scripts/test-deps.sh
	mkdir -p results && rm -f $(RELIABILITY_REPORT)
	USERATTRS_RELIABILITY_REPORT=$(RELIABILITY_REPORT) go test -count=1 -timeout 20m -run '^(TestFaults|TestOverload)$$' ./reliability
	USERATTRS_RELIABILITY_REPORT=$(RELIABILITY_REPORT) go test -count=1 -timeout 40m \
		-run '^(TestPostgresFailover|TestDatabaseOutage|TestKillInstanceUnderLoad|TestKeycloakOutage|TestStalledDisk|TestKillUnderWriteStorm|TestUserWritingFlatOut|TestInvalidBodyFlood|TestSlowReceiver|TestReceiverDown)$$' ./cmd/userattrs
	@go run ./reliability/table $(RELIABILITY_REPORT)
