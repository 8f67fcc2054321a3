#!/usr/bin/env bash
# Makes sure the machine has what the test suite needs beyond Go: the
# PostgreSQL server binaries, from which the tests start their own cluster;
# Keycloak, fetched from Maven Central, which the tests start themselves
# (with a JDK 21 or later); and what the generated-clients test uses:
# openapi-generator, Python with venv, Node.js and the TypeScript compiler;
# oidc-provider, the second real OpenID Provider of the token tests; podman
# and runc, which run the image; and the operators' tools (promtool, helm,
# kubeconform, an OpenTelemetry Collector: scripts/ops-tools.sh).
# On a fresh machine it installs what is missing from Debian's packages.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

apt_install() {
  if [ "$(id -u)" != 0 ]; then
    echo "test-deps: install $* (Debian packages)" >&2
    exit 1
  fi
  echo "test-deps: installing $*" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

have_postgres() {
  command -v pg_ctl >/dev/null 2>&1 || compgen -G "/usr/lib/postgresql/*/bin/pg_ctl" >/dev/null
}

if ! have_postgres; then
  # The tests run their own cluster: keep the package from creating and
  # starting a system one.
  if [ "$(id -u)" = 0 ]; then
    mkdir -p /etc/postgresql-common
    [ -f /etc/postgresql-common/createcluster.conf ] ||
      echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.conf
  fi
  apt_install postgresql
fi

command -v mvn >/dev/null 2>&1 || apt_install maven
command -v curl >/dev/null 2>&1 || apt_install curl
command -v python3 >/dev/null 2>&1 && python3 -c 'import venv, ensurepip' 2>/dev/null || apt_install python3 python3-venv
command -v npm >/dev/null 2>&1 || apt_install nodejs npm
{ command -v podman && command -v runc; } >/dev/null 2>&1 || apt_install podman runc
"$here/keycloak.sh" fetch
"$here/client-tools.sh" >/dev/null
"$here/oidc-provider.sh" >/dev/null
"$here/ops-tools.sh" >/dev/null
