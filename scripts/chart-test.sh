#!/usr/bin/env bash
# make chart-test: the chart in a real Kubernetes control plane, on
# loopback: etcd (Debian's etcd-server), kube-apiserver,
# kube-controller-manager and kube-scheduler built from the k8s.io/kubernetes
# module (deploy/tools/kube), and kwok's fake node. Every value set of the
# chart passes the API server's own validation (kubectl apply
# --dry-run=server); a PostgreSQL release reaches `deployed` with helm
# install --wait, its Deployment rolls out, and kubectl drain of the node is
# refused by the PodDisruptionBudget. Not part of make test: building the
# control plane takes minutes on a new machine.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
KUBERNETES_VERSION=v1.35.4
KWOK_VERSION=v0.8.0
cache=${USERATTRS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/userattrs}/ops
log() { echo "chart-test: $*" >&2; }

eval "$(scripts/ops-tools.sh)"
if ! command -v etcd >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] || { log "install Debian's etcd-server"; exit 1; }
  DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends etcd-server >/dev/null
fi
kube=$cache/kube-$(cat deploy/tools/kube/go.mod deploy/tools/kube/go.sum | sha256sum | cut -c1-16)
if [ ! -x "$kube/kubectl" ]; then
  log "building kube-apiserver, kube-controller-manager, kube-scheduler and kubectl $KUBERNETES_VERSION (minutes, the first time)"
  rm -rf "$kube.tmp" && mkdir -p "$kube.tmp"
  (cd deploy/tools/kube && go build -ldflags "-X k8s.io/component-base/version.gitVersion=$KUBERNETES_VERSION" -o "$kube.tmp/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl)
  rm -rf "$kube" && mv "$kube.tmp" "$kube"
fi
kwok=$cache/kwok-$KWOK_VERSION/kwok
if [ ! -x "$kwok" ]; then
  log "building kwok $KWOK_VERSION"
  GOBIN=$(dirname "$kwok") go install "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
fi

# kwok's stages (a node that turns Ready and keeps its heartbeat, pods that
# run and end) are files of its module.
kwok_module=$(go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
stages=()
for f in node/fast/node-initialize.yaml node/heartbeat/node-heartbeat.yaml pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
  stages+=(--config "$kwok_module/kustomize/stage/$f")
done

work=$(mktemp -d)
pids=()
# Stops what was started, the last first (the API server before etcd, which
# it would wait for), and kills what is still running 10 s later.
cleanup() {
  local i
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill "${pids[i]}" 2>/dev/null || true; done
  for _ in $(seq 100); do
    local running=0
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && running=1; done
    [ "$running" = 0 ] && break
    sleep 0.1
  done
  kill -9 "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
etcd_port=$(port) peer_port=$(port) api_port=$(port) kwok_port=$(port)

openssl genrsa -out "$work/sa.key" 2048 2>/dev/null
openssl rsa -in "$work/sa.key" -pubout -out "$work/sa.pub" 2>/dev/null
token=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
echo "$token,admin,admin,system:masters" >"$work/tokens.csv"
cat >"$work/kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters: [{name: test, cluster: {server: "https://127.0.0.1:$api_port", insecure-skip-tls-verify: true}}]
users: [{name: admin, user: {token: "$token"}}]
contexts: [{name: test, context: {cluster: test, user: admin}}]
current-context: test
KC
export KUBECONFIG=$work/kubeconfig
kubectl=$kube/kubectl

etcd --data-dir "$work/etcd" --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
  --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
  --initial-cluster "default=http://127.0.0.1:$peer_port" >"$work/etcd.log" 2>&1 &
pids+=($!)
"$kube/kube-apiserver" --etcd-servers "http://127.0.0.1:$etcd_port" --bind-address 127.0.0.1 --advertise-address 127.0.0.1 \
  --secure-port "$api_port" --cert-dir "$work/certs" --token-auth-file "$work/tokens.csv" --authorization-mode RBAC \
  --service-account-issuer https://kubernetes.default.svc --service-account-key-file "$work/sa.pub" \
  --service-account-signing-key-file "$work/sa.key" --service-cluster-ip-range 10.96.0.0/16 >"$work/apiserver.log" 2>&1 &
pids+=($!)
for i in $(seq 120); do
  "$kubectl" get --raw /readyz >/dev/null 2>&1 && break
  [ "$i" = 120 ] && { tail -20 "$work/apiserver.log" >&2; log "the API server did not get ready"; exit 1; }
  sleep 0.5
done
log "API server $("$kubectl" version -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["serverVersion"]["gitVersion"])') ready on 127.0.0.1:$api_port"
"$kube/kube-controller-manager" --kubeconfig "$KUBECONFIG" --leader-elect=false --bind-address 127.0.0.1 --secure-port 0 \
  --service-account-private-key-file "$work/sa.key" --use-service-account-credentials=false >"$work/controller-manager.log" 2>&1 &
pids+=($!)
"$kube/kube-scheduler" --kubeconfig "$KUBECONFIG" --leader-elect=false --bind-address 127.0.0.1 --secure-port 0 >"$work/scheduler.log" 2>&1 &
pids+=($!)
"$kwok" --kubeconfig "$KUBECONFIG" "${stages[@]}" --manage-all-nodes=false --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
  --node-ip 127.0.0.1 --server-address "127.0.0.1:$kwok_port" >"$work/kwok.log" 2>&1 &
pids+=($!)
"$kubectl" apply -f - >/dev/null <<'NODE'
apiVersion: v1
kind: Node
metadata:
  name: fake-node
  annotations: {kwok.x-k8s.io/node: fake}
  labels: {kubernetes.io/hostname: fake-node, type: kwok}
status:
  allocatable: {cpu: "32", memory: 256Gi, pods: "110"}
  capacity: {cpu: "32", memory: 256Gi, pods: "110"}
NODE
"$kubectl" create namespace apps >/dev/null
"$kubectl" apply --server-side -f deploy/tools/crd-schemas/monitoring.coreos.com_servicemonitors.yaml \
  -f deploy/tools/crd-schemas/monitoring.coreos.com_prometheusrules.yaml >/dev/null
"$kubectl" wait --for=condition=Established crd/servicemonitors.monitoring.coreos.com crd/prometheusrules.monitoring.coreos.com --timeout=60s >/dev/null

# Every value set through the API server's validation and admission.
chart=deploy/helm/userattrs
issuer=oidc.issuer=https://sso.example.com/realms/main
value_sets=(
  "$issuer"
  "$issuer serviceMonitor.enabled=true prometheusRule.enabled=true dashboard.enabled=true networkPolicy.enabled=true"
  "store=postgres replicaCount=3 secrets.databaseUrl=postgres://u:p@db/ua autoscaling.enabled=true $issuer"
  "store=keycloak replicaCount=2 keycloak.url=https://sso.example.com keycloak.realm=main keycloak.clientId=ua secrets.keycloakClientSecret=s $issuer"
)
for set in "${value_sets[@]}"; do
  args=()
  for s in $set; do args+=(--set "$s"); done
  "$OPS_HELM" template ua "$chart" -n apps "${args[@]}" 2>/dev/null | "$kubectl" apply -n apps --dry-run=server -f - >/dev/null ||
    { log "the API server refused the chart with: $set"; exit 1; }
done
log "${#value_sets[@]} value sets pass the API server's validation"

# A release of two pods on the fake node.
"$OPS_HELM" install ua "$chart" -n apps --wait --timeout 90s --set store=postgres --set replicaCount=2 \
  --set secrets.databaseUrl=postgres://u:p@db/ua --set "$issuer" --set serviceMonitor.enabled=true \
  --set prometheusRule.enabled=true --set dashboard.enabled=true --set networkPolicy.enabled=true 2>"$work/helm.log" >/dev/null ||
  { cat "$work/helm.log" >&2; "$kubectl" get nodes,all -n apps >&2; "$kubectl" describe pods -n apps | tail -15 >&2
    tail -n 5 "$work/kwok.log" >&2; exit 1; }
status=$("$OPS_HELM" status ua -n apps -o json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["info"]["status"])')
[ "$status" = deployed ] || { log "the release is $status, not deployed"; exit 1; }
"$kubectl" rollout status deployment/ua-userattrs -n apps --timeout=2m >/dev/null
log "helm install: $status; the Deployment rolled out: $("$kubectl" get deployment ua-userattrs -n apps -o jsonpath='{.status.readyReplicas}') pods ready"

# The budget keeps one pod: the drain evicts one and is refused the other.
if "$kubectl" drain fake-node --ignore-daemonsets --delete-emptydir-data --timeout=20s >"$work/drain.log" 2>&1; then
  log "kubectl drain succeeded: the PodDisruptionBudget did not hold"; cat "$work/drain.log" >&2; exit 1
fi
grep -q "disruption budget" "$work/drain.log" || { log "kubectl drain failed, but not for the budget:"; cat "$work/drain.log" >&2; exit 1; }
log "kubectl drain refused by the PodDisruptionBudget"
log "ok"
