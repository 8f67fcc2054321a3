#!/usr/bin/env bash
# Makes sure the machine has what the test suite needs beyond Go: the
# PostgreSQL server binaries, from which the tests start their own cluster.
# On a fresh machine it installs them from Debian's packages.
set -euo pipefail

have_postgres() {
  command -v pg_ctl >/dev/null 2>&1 || compgen -G "/usr/lib/postgresql/*/bin/pg_ctl" >/dev/null
}

if ! have_postgres; then
  if [ "$(id -u)" != 0 ]; then
    echo "test-deps: PostgreSQL server binaries are missing; install the 'postgresql' package" >&2
    exit 1
  fi
  echo "test-deps: installing PostgreSQL server binaries" >&2
  # The tests run their own cluster: keep the package from creating and
  # starting a system one.
  mkdir -p /etc/postgresql-common
  [ -f /etc/postgresql-common/createcluster.conf ] ||
    echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.conf
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends postgresql >/dev/null
fi
