#!/usr/bin/env bash
# The second real OpenID Provider of the tests: oidc-provider (panva), from
# the npm registry, run by Node.js with scripts/oidc-provider/server.mjs.
# Installs it once into the cache and prints the directory to run
# `node server.mjs` in.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=${USERATTRS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/userattrs}/oidc-provider
mkdir -p "$dir"
cp "$here/oidc-provider/package.json" "$here/oidc-provider/server.mjs" "$dir/"
want=$(sed -n 's/.*"oidc-provider": "\(.*\)".*/\1/p' "$dir/package.json")
have=$(sed -n 's/^  "version": "\(.*\)".*/\1/p' "$dir/node_modules/oidc-provider/package.json" 2>/dev/null || true)
if [ "$have" != "$want" ]; then
  echo "oidc-provider.sh: installing oidc-provider@$want from npm" >&2
  npm install --silent --no-audit --no-fund --prefix "$dir" >&2
fi
echo "$dir"
