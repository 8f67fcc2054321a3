#!/usr/bin/env bash
# A real Keycloak for tests and for developers.
#
#   scripts/keycloak.sh up       fetch (once), build the extension, start and
#                                set up Keycloak; print export lines for `eval`
#   scripts/keycloak.sh down     stop it
#   scripts/keycloak.sh env      print the export lines again
#   scripts/keycloak.sh signal S send signal S (STOP, CONT) to it
#   scripts/keycloak.sh fetch    only fetch the distribution and build the
#                                extension
#
# Keycloak comes from Maven Central (org.keycloak:keycloak-quarkus-dist),
# cached outside the repository, and runs `start-dev` on 127.0.0.1 with a
# pinned hostname (so the token issuer is stable), the test realm of
# scripts/keycloak-realm.json and the userattrs extension (built from
# keycloak-extension/ with javac against the distribution's own jars). Its
# database is in memory, or PostgreSQL with KEYCLOAK_DB_URL (a JDBC URL),
# KEYCLOAK_DB_USERNAME and KEYCLOAK_DB_PASSWORD.
#
# Each port has its own state (pid, log): several Keycloaks on one machine
# do not mix, and `up` refuses a port something else holds.
set -euo pipefail

KEYCLOAK_VERSION=26.5.6
here=$(cd "$(dirname "$0")" && pwd)
cache=${USERATTRS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/userattrs}/keycloak
port=${KEYCLOAK_PORT:-18080}
management_port=${KEYCLOAK_MANAGEMENT_PORT:-19000}
state=${KEYCLOAK_STATE_DIR:-$cache/run-$port}
url=http://127.0.0.1:$port
realm=userattrs
admin_user=admin
admin_password=${KEYCLOAK_BOOTSTRAP_PASSWORD:-userattrs-admin}
dist=$cache/keycloak-$KEYCLOAK_VERSION

log() { echo "keycloak.sh: $*" >&2; }

print_env() {
  cat <<ENV
export KEYCLOAK_URL=$url
export KEYCLOAK_REALM=$realm
export KEYCLOAK_ADMIN_USER=$admin_user
export KEYCLOAK_ADMIN_PASSWORD=$admin_password
export KEYCLOAK_CLIENT_ID=userattrs-service
export KEYCLOAK_CLIENT_SECRET=userattrs-service-secret
export KEYCLOAK_APP_CLIENT_ID=userattrs-app
export KEYCLOAK_APP_CLIENT_SECRET=userattrs-app-secret
export KEYCLOAK_BACKEND_CLIENT_ID=userattrs-backend
export KEYCLOAK_BACKEND_CLIENT_SECRET=userattrs-backend-secret
export KEYCLOAK_IDP_ALIAS=partner-idp
export KEYCLOAK_AUDIENCE=userattrs
ENV
}

# java_home finds a JDK of version 21 or later: recent Keycloak needs it.
java_home() {
  local candidates=("${JAVA_HOME:-}" /usr/lib/jvm/temurin-25-jdk-amd64 /usr/lib/jvm/*)
  for home in "${candidates[@]}"; do
    [ -n "$home" ] && [ -x "$home/bin/java" ] || continue
    local version
    version=$("$home/bin/java" -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1)
    if [ -n "$version" ] && [ "$version" -ge 21 ]; then
      echo "$home"
      return 0
    fi
  done
  log "no JDK 21 or later found (set JAVA_HOME)"
  return 1
}

fetch() {
  fetch_dist
  build_extension
}

# build_extension compiles keycloak-extension/ against the distribution's
# jars and installs the provider JAR, unless the JAR there was built from
# exactly these inputs: the extension's sources, this script (which holds
# the compiler's flags and the Keycloak version) and the JDK that compiles.
build_extension() {
  local src=$here/../keycloak-extension jar=$dist/providers/userattrs-keycloak.jar
  local jh stamp
  jh=$(java_home)
  stamp=$( (cd "$src" && find . -type f | LC_ALL=C sort | xargs sha256sum; sha256sum <"$here/keycloak.sh";
    "$jh/bin/javac" -version 2>&1) | sha256sum | cut -c1-16)
  [ -f "$jar" ] && [ "$(cat "$dist/providers/userattrs-keycloak.stamp" 2>/dev/null)" = "$stamp" ] && return 0
  local build
  build=$(mktemp -d)
  log "building the userattrs extension"
  "$jh/bin/javac" --release 21 -nowarn -cp "$dist/lib/lib/main/*" -d "$build/classes" $(find "$src/src" -name '*.java') >&2
  cp -r "$src/resources/." "$build/classes/"
  # The stamp goes first and the JAR is renamed into place: an interrupted
  # build leaves a stamp without its JAR, which the next run rebuilds.
  rm -f "$dist/providers/userattrs-keycloak.stamp"
  "$jh/bin/jar" --create --file "$build/userattrs-keycloak.jar" -C "$build/classes" .
  mv "$build/userattrs-keycloak.jar" "$jar"
  echo "$stamp" >"$dist/providers/userattrs-keycloak.stamp"
  rm -rf "$build"
}

# fetch_dist fetches and unpacks the distribution. Maven checks what it
# downloads against Maven Central's checksums; the archive and the unpacked
# tree each appear under their final names only once whole, so that an
# interrupted run is redone rather than trusted.
fetch_dist() {
  [ -x "$dist/bin/kc.sh" ] && return 0
  mkdir -p "$cache"
  local archive=$cache/keycloak-quarkus-dist-$KEYCLOAK_VERSION.tar.gz
  if [ ! -f "$archive" ]; then
    command -v mvn >/dev/null || { log "mvn is needed to fetch Keycloak from Maven Central"; return 1; }
    log "fetching org.keycloak:keycloak-quarkus-dist:$KEYCLOAK_VERSION from Maven Central"
    local download
    download=$(mktemp -d "$cache/download.XXXXXX")
    mvn -q -B dependency:copy -Dartifact="org.keycloak:keycloak-quarkus-dist:$KEYCLOAK_VERSION:tar.gz" \
      -DoutputDirectory="$download" >&2
    mv "$download/$(basename "$archive")" "$archive"
    rm -rf "$download"
  fi
  local unpack
  unpack=$(mktemp -d "$cache/unpack.XXXXXX")
  tar -xzf "$archive" -C "$unpack"
  rm -rf "$dist"
  mv "$unpack/keycloak-$KEYCLOAK_VERSION" "$dist"
  rm -rf "$unpack"
}

running() {
  [ -f "$state/pid" ] && kill -0 "$(cat "$state/pid")" 2>/dev/null
}

# busy reports whether something listens on a port.
busy() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# ours reports whether the Keycloak of this state directory, and not
# another process, listens on the port.
ours() {
  running || return 1
  local pids
  pids=$(ss -ltnpH "sport = :$port" 2>/dev/null | grep -o 'pid=[0-9]*' | cut -d= -f2)
  [ -n "$pids" ] || return 1
  for pid in $pids; do
    # Keycloak runs as a child of the script started in its process group.
    [ "$(ps -o pgid= -p "$pid" | tr -d ' ')" = "$(cat "$state/pid")" ] || return 1
  done
}

ready() {
  ours &&
    curl -sf "http://127.0.0.1:$management_port/health/ready" >/dev/null 2>&1 &&
    curl -sf "$url/realms/$realm/.well-known/openid-configuration" >/dev/null 2>&1
}

up() {
  if running && ready; then
    log "already running"
    print_env
    return 0
  fi
  for p in "$port" "$management_port"; do
    if busy "$p"; then
      log "port $p is in use by another process: stop it, or choose KEYCLOAK_PORT and KEYCLOAK_MANAGEMENT_PORT"
      return 1
    fi
  done
  fetch
  local jh
  jh=$(java_home)
  local db=(--db=dev-mem)
  if [ -n "${KEYCLOAK_DB_URL:-}" ]; then
    db=(--db=postgres --db-url="$KEYCLOAK_DB_URL" --db-username="${KEYCLOAK_DB_USERNAME:-}" --db-password="${KEYCLOAK_DB_PASSWORD:-}")
  fi
  mkdir -p "$state" "$dist/data/import"
  cp "$here/keycloak-realm.json" "$dist/data/import/userattrs-realm.json"
  log "starting Keycloak $KEYCLOAK_VERSION on $url (log: $state/keycloak.log)"
  local start=$SECONDS
  # setsid: Keycloak gets a process group of its own, which `down` stops whole.
  JAVA_HOME=$jh PATH=$jh/bin:$PATH \
    KC_BOOTSTRAP_ADMIN_USERNAME=$admin_user KC_BOOTSTRAP_ADMIN_PASSWORD=$admin_password \
    setsid "$dist/bin/kc.sh" start-dev \
      "${db[@]}" \
      --http-host=127.0.0.1 --http-port="$port" \
      --http-management-port="$management_port" \
      --hostname="$url" \
      --health-enabled=true \
      --import-realm \
      >"$state/keycloak.log" 2>&1 </dev/null &
  echo $! >"$state/pid"
  until ready; do
    if ! running; then
      log "Keycloak exited; last lines of its log:"
      tail -20 "$state/keycloak.log" >&2
      return 1
    fi
    if [ $((SECONDS - start)) -gt 240 ]; then
      log "Keycloak did not become ready within 240s"
      down
      return 1
    fi
    sleep 1
  done
  setup
  log "ready after $((SECONDS - start))s"
  print_env
}

# setup does through the Admin API what the realm file cannot: client scopes
# added there would replace Keycloak's built-in ones (the one that puts sub
# in access tokens among them), and the user profile must keep unmanaged
# attributes instead of discarding them.
setup() {
  python3 - "$url" "$realm" "$admin_user" "$admin_password" <<'PY'
import json, sys, urllib.parse, urllib.request
url, realm, user, password = sys.argv[1:]

def call(method, path, body=None, token=None, form=None):
    headers = {}
    data = None
    if token:
        headers["Authorization"] = "Bearer " + token
    if form is not None:
        data = urllib.parse.urlencode(form).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    elif body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(url + path, data=data, method=method, headers=headers)
    with urllib.request.urlopen(req) as resp:
        raw = resp.read()
        return resp.headers, (json.loads(raw) if raw else None)

_, tok = call("POST", "/realms/master/protocol/openid-connect/token",
              form={"grant_type": "password", "client_id": "admin-cli", "username": user, "password": password})
token = tok["access_token"]
admin = "/admin/realms/" + realm

_, existing = call("GET", admin + "/client-scopes", token=token)
scope_ids = {s["name"]: s["id"] for s in existing}
for name in ("user:attributes:read", "user:attributes:write", "user:attributes:admin"):
    if name not in scope_ids:
        headers, _ = call("POST", admin + "/client-scopes", token=token, body={
            "name": name, "protocol": "openid-connect",
            "attributes": {"include.in.token.scope": "true", "display.on.consent.screen": "false"}})
        scope_ids[name] = headers["Location"].rsplit("/", 1)[1]

_, clients = call("GET", admin + "/clients?clientId=userattrs-app", token=token)
app = clients[0]["id"]
for name in ("user:attributes:read", "user:attributes:write"):
    call("PUT", f"{admin}/clients/{app}/optional-client-scopes/{scope_ids[name]}", token=token)
# A backend's service account may ask for the admin scope; the app's users
# may not, and the admin API refuses a user's token whatever it holds.
_, clients = call("GET", admin + "/clients?clientId=userattrs-backend", token=token)
call("PUT", f"{admin}/clients/{clients[0]['id']}/optional-client-scopes/{scope_ids['user:attributes:admin']}", token=token)

_, profile = call("GET", admin + "/users/profile", token=token)
profile["unmanagedAttributePolicy"] = "ENABLED"
call("PUT", admin + "/users/profile", token=token, body=profile)
PY
}

down() {
  if [ -f "$state/pid" ]; then
    local pid
    pid=$(cat "$state/pid")
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 30); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 1
    done
    kill -KILL -- "-$pid" 2>/dev/null || true
    rm -f "$state/pid"
  fi
}

case "${1:-}" in
  fetch) fetch ;;
  up) up ;;
  down) down ;;
  env) print_env ;;
  signal) [ -f "$state/pid" ] && kill -"${2:?signal}" -- "-$(cat "$state/pid")" ;;
  *) echo "usage: $0 up|down|env|signal SIG|fetch" >&2; exit 2 ;;
esac
