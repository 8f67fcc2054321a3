#!/usr/bin/env bash
# The second real OpenID Provider of the tests: oidc-provider (panva), from
# the npm registry, run by Node.js with scripts/oidc-provider/server.mjs.
# Installs it into the cache, again whenever what is there no longer
# matches package.json, and prints the directory to run
# `node server.mjs` in.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=${USERATTRS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/userattrs}/oidc-provider
mkdir -p "$dir"
cp "$here/oidc-provider/package.json" "$here/oidc-provider/server.mjs" "$dir/"
# npm ls checks the installed tree against package.json, dependencies of
# dependencies included: a tree from an older package.json is replaced.
if ! npm ls --prefix "$dir" --all >/dev/null 2>&1; then
  echo "oidc-provider.sh: installing $(sed -n 's/.*"oidc-provider": "\(.*\)".*/oidc-provider@\1/p' "$dir/package.json") from npm" >&2
  npm install --silent --no-audit --no-fund --prefix "$dir" >&2
  npm ls --prefix "$dir" --all >/dev/null || { echo "oidc-provider.sh: npm left an incomplete tree in $dir" >&2; exit 1; }
fi
echo "$dir"
