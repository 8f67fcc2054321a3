#!/usr/bin/env bash
# The tools an app developer uses to make and run clients from
# api/openapi.yaml, for the generated-clients test: openapi-generator
# (org.openapitools:openapi-generator-cli, from Maven Central, run with the
# default JDK), a Python virtual environment, and the TypeScript compiler
# (from npm); the two linters teams run on the document (@redocly/cli,
# @stoplight/spectral-cli, from npm); schemathesis, the API fuzzer driven
# by the document, standardwebhooks, the official verifier of webhook
# signatures, and check-jsonschema, which checks the attribute policy's
# examples against its JSON Schema (from PyPI, into the virtual
# environment). Kept
# in the cache, and re-checked against the versions below on every run;
# prints export lines for `eval`.
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
STANDARDWEBHOOKS_VERSION=1.3.0
CHECK_JSONSCHEMA_VERSION=0.39.0
cache=${USERATTRS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/userattrs}/clients
mkdir -p "$cache"

log() { echo "client-tools.sh: $*" >&2; }

# Each install below is checked against what it was asked for on every
# run, never trusted because a file exists: a cache from an older version of
# this script must not stand in for what a new machine would install.

# The jars: Maven checks each download against Maven Central's checksums,
# and a jar appears under its final name only once copied whole.
for v in "${versions[@]}"; do
  jar=$cache/openapi-generator-cli-$v.jar
  # A jar is a zip archive: one that fails its checksums is fetched anew.
  if ! python3 -c 'import sys, zipfile; sys.exit(zipfile.ZipFile(sys.argv[1]).testzip() is not None)' "$jar" 2>/dev/null; then
    log "fetching org.openapitools:openapi-generator-cli:$v from Maven Central"
    download=$(mktemp -d "$cache/download.XXXXXX")
    mvn -q -B dependency:copy -Dartifact="org.openapitools:openapi-generator-cli:$v" -DoutputDirectory="$download" >&2
    mv "$download/$(basename "$jar")" "$jar"
    rm -rf "$download"
  fi
done

# The virtual environment: rebuilt when its Python no longer runs (the
# interpreter it was made from was upgraded or removed).
if ! "$cache/venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
  log "creating a Python virtual environment"
  rm -rf "$cache/venv"
  python3 -m venv "$cache/venv" >&2
fi
# The PyPI packages, each checked by its installed version.
pypi_packages=("schemathesis==$SCHEMATHESIS_VERSION" "standardwebhooks==$STANDARDWEBHOOKS_VERSION"
  "check-jsonschema==$CHECK_JSONSCHEMA_VERSION")
pypi_current() {
  "$cache/venv/bin/python" - "${pypi_packages[@]}" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
sys.exit(any(version(name) != want for name, want in (p.split("==") for p in sys.argv[1:])))
PY
}
if ! pypi_current; then
  log "installing ${pypi_packages[*]} from PyPI"
  "$cache/venv/bin/pip" install -q --disable-pip-version-check "${pypi_packages[@]}" >&2
fi

# The npm packages: each installed version must be the one asked for.
npm_packages=("typescript@$TYPESCRIPT_VERSION" "@redocly/cli@$REDOCLY_VERSION" "@stoplight/spectral-cli@$SPECTRAL_VERSION")
npm_current() {
  local spec name
  for spec in "${npm_packages[@]}"; do
    name=${spec%@*}
    [ "$(node -p "require('$cache/node_modules/$name/package.json').version" 2>/dev/null)" = "${spec##*@}" ] || return 1
  done
  [ -x "$cache/node_modules/.bin/tsc" ] && [ -x "$cache/node_modules/.bin/redocly" ] && [ -x "$cache/node_modules/.bin/spectral" ]
}
if ! npm_current; then
  log "installing ${npm_packages[*]} from npm"
  npm install --silent --no-audit --no-fund --prefix "$cache" "${npm_packages[@]}" >&2
  npm_current || { log "npm did not install ${npm_packages[*]}"; exit 1; }
fi

echo "export OPENAPI_GENERATOR_VERSIONS=\"${versions[*]}\""
echo "export OPENAPI_GENERATOR_JARS=\"$(printf "$cache/openapi-generator-cli-%s.jar " "${versions[@]}" | sed 's/ $//')\""
echo "export CLIENTS_PYTHON=$cache/venv/bin/python"
echo "export CLIENTS_TSC=$cache/node_modules/.bin/tsc"
echo "export CLIENTS_REDOCLY=$cache/node_modules/.bin/redocly"
echo "export CLIENTS_SPECTRAL=$cache/node_modules/.bin/spectral"
echo "export CLIENTS_SCHEMATHESIS=$cache/venv/bin/schemathesis"
echo "export CLIENTS_CHECK_JSONSCHEMA=$cache/venv/bin/check-jsonschema"
