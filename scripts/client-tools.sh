#!/usr/bin/env bash
# The tools an app developer uses to make and run clients from
# api/openapi.yaml, for the generated-clients test: openapi-generator
# (org.openapitools:openapi-generator-cli, from Maven Central, run with the
# default JDK), a Python virtual environment, and the TypeScript compiler
# (from npm); the two linters teams run on the document (@redocly/cli,
# @stoplight/spectral-cli, from npm); and schemathesis, the API fuzzer
# driven by the document (from PyPI, into the virtual environment). Fetched
# once into the cache; prints export lines for `eval`.
#
#   scripts/client-tools.sh [GENERATOR_VERSION ...]
#
# The default versions are the ones the tests use: the newest release, and
# the oldest that teams were found using.
set -euo pipefail

versions=("$@")
[ ${#versions[@]} -gt 0 ] || versions=(7.25.0 7.17.0)
TYPESCRIPT_VERSION=5.9.3
REDOCLY_VERSION=2.77.0
SPECTRAL_VERSION=6.16.3
SCHEMATHESIS_VERSION=4.32.5
cache=${USERATTRS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/userattrs}/clients
mkdir -p "$cache"

log() { echo "client-tools.sh: $*" >&2; }

for v in "${versions[@]}"; do
  if [ ! -f "$cache/openapi-generator-cli-$v.jar" ]; then
    log "fetching org.openapitools:openapi-generator-cli:$v from Maven Central"
    mvn -q -B dependency:copy -Dartifact="org.openapitools:openapi-generator-cli:$v" -DoutputDirectory="$cache" >&2
  fi
done
if [ ! -x "$cache/venv/bin/python" ]; then
  log "creating a Python virtual environment"
  python3 -m venv "$cache/venv" >&2
fi
if [ "$("$cache/venv/bin/schemathesis" --version 2>/dev/null)" != "schemathesis, version $SCHEMATHESIS_VERSION" ]; then
  log "installing schemathesis==$SCHEMATHESIS_VERSION from PyPI"
  "$cache/venv/bin/pip" install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION" >&2
fi
if [ ! -x "$cache/node_modules/.bin/tsc" ] || [ ! -x "$cache/node_modules/.bin/redocly" ] || [ ! -x "$cache/node_modules/.bin/spectral" ]; then
  log "installing typescript@$TYPESCRIPT_VERSION, @redocly/cli@$REDOCLY_VERSION and @stoplight/spectral-cli@$SPECTRAL_VERSION from npm"
  npm install --silent --no-audit --no-fund --prefix "$cache" "typescript@$TYPESCRIPT_VERSION" \
    "@redocly/cli@$REDOCLY_VERSION" "@stoplight/spectral-cli@$SPECTRAL_VERSION" >&2
fi

echo "export OPENAPI_GENERATOR_VERSIONS=\"${versions[*]}\""
echo "export OPENAPI_GENERATOR_JARS=\"$(printf "$cache/openapi-generator-cli-%s.jar " "${versions[@]}" | sed 's/ $//')\""
echo "export CLIENTS_PYTHON=$cache/venv/bin/python"
echo "export CLIENTS_TSC=$cache/node_modules/.bin/tsc"
echo "export CLIENTS_REDOCLY=$cache/node_modules/.bin/redocly"
echo "export CLIENTS_SPECTRAL=$cache/node_modules/.bin/spectral"
echo "export CLIENTS_SCHEMATHESIS=$cache/venv/bin/schemathesis"
