# The test command of the README and of CI: everything the suite needs, it
# sets up itself.
.PHONY: test run build fuzz bench

test:
	scripts/test-deps.sh
	go vet ./...
	go test -race -count=1 -timeout 20m ./...

run:
	go run ./cmd/userattrs serve --dev

build:
	go build -o bin/userattrs ./cmd/userattrs

# Longer fuzzing than the seed corpora the test command runs.
fuzz:
	go test -run '^$$' -fuzz FuzzDecodePatch -fuzztime 60s ./server
	go test -run '^$$' -fuzz FuzzValidate -fuzztime 60s .

# The benchmark: the speed limit, userattrs on every store available, and
# Keycloak's own APIs, side by side; results in results/. Not a test.
bench:
	scripts/test-deps.sh
	go run ./bench
