#!/usr/bin/env bash
# make image: the OCI image of the service as a tarball,
# dist/userattrs-image.tar (linux/amd64), and its SPDX SBOM in dist/, built
# by ko (a tool of go.mod) without a Docker engine or a remote registry.
# The base is made here: one layer (deploy/image/base.py) with the non-root
# user 65532, the CA certificates and a writable /tmp, pushed to a loopback
# registry for the length of the build and named by digest. The same
# sources give the same image digest.
#
#   VERSION=1.2.3 scripts/image.sh     (default: git describe)
set -euo pipefail
cd "$(dirname "$0")/.."
export VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo devel)}
# The image's creation time is the commit's: reproducible, and meaningful.
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
ca=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
[ -f "$ca" ] || { echo "image.sh: no CA bundle at $ca (Debian: apt-get install ca-certificates)" >&2; exit 1; }
mkdir -p dist
work=$(mktemp -d)
registry=
cleanup() {
  [ -z "$registry" ] || kill "$registry" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

go build -o "$work/crane" github.com/google/go-containerregistry/cmd/crane
go build -o "$work/ko" github.com/google/ko
python3 deploy/image/base.py "$ca" "$work/base.tar"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$work/crane" registry serve --address "127.0.0.1:$port" 2>"$work/registry.log" &
registry=$!
for _ in $(seq 50); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done
base=127.0.0.1:$port/userattrs-base
"$work/crane" append --oci-empty-base -f "$work/base.tar" -t "$base:build" >/dev/null 2>&1
"$work/crane" mutate "$base:build" --set-platform linux/amd64 --user 65532:65532 -t "$base:build" >/dev/null 2>&1
digest=$("$work/crane" digest "$base:build")
# ko takes a base named by digest from its cache's OCI layout: the image
# then names its base by a name that holds no port of this build.
mkdir -p "$work/kocache"
"$work/crane" pull --format=oci "$base@$digest" "$work/kocache/img" 2>/dev/null
kill "$registry"
registry=

KO_CONFIG_PATH=deploy/image KO_DEFAULTBASEIMAGE="registry.invalid/userattrs-base@$digest" KO_DOCKER_REPO=userattrs KOCACHE="$work/kocache" \
  "$work/ko" build ./cmd/userattrs --push=false --bare --platform=linux/amd64 --tags="$VERSION" \
  --tarball=dist/userattrs-image.tar --sbom=spdx --sbom-dir=dist \
  --image-label=org.opencontainers.image.title=userattrs \
  --image-label=org.opencontainers.image.description="The attributes endpoints of a user API" \
  --image-label=org.opencontainers.image.version="$VERSION" \
  --image-label=org.opencontainers.image.revision="$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
  --image-label=org.opencontainers.image.licenses=Apache-2.0 >"$work/ko.out" 2>"$work/ko.log" ||
  { cat "$work/ko.log" >&2; exit 1; }
echo "image.sh: dist/userattrs-image.tar, userattrs:$VERSION, $(tail -1 "$work/ko.out")" >&2
