#!/usr/bin/env bash
# The tools that check the operators' kit, each the one its ecosystem uses:
# promtool (the alert and recording rules, the dashboard's queries), helm
# and kubeconform (the chart), an OpenTelemetry Collector made by the
# collector builder from deploy/tools/otelcol-builder.yaml (the traces),
# and the Kubernetes JSON schemas (PyPI kubernetes-validate). Each is built
# with `go install` at the version below into the cache, under a directory
# named by that version: a new version, or a new machine, builds anew.
# Prints export lines for `eval`.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
PROMETHEUS_VERSION=v0.316.0
HELM_VERSION=v4.3.2
KUBECONFORM_VERSION=v0.8.0
COLLECTOR_VERSION=v0.165.0
KUBERNETES_VALIDATE_VERSION=1.37.0
cache=${USERATTRS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/userattrs}/ops
mkdir -p "$cache"

log() { echo "ops-tools.sh: $*" >&2; }

# go_tool NAME PACKAGE VERSION: the binary NAME of PACKAGE@VERSION.
go_tool() {
  local dir=$cache/$1-$3
  if [ ! -x "$dir/$1" ]; then
    log "building $2@$3"
    rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
    GOBIN=$dir.tmp go install "$2@$3" >&2
    rm -rf "$dir" && mv "$dir.tmp" "$dir"
  fi
  echo "$dir/$1"
}

promtool=$(go_tool promtool github.com/prometheus/prometheus/cmd/promtool "$PROMETHEUS_VERSION")
helm=$(go_tool helm helm.sh/helm/v4/cmd/helm "$HELM_VERSION")
kubeconform=$(go_tool kubeconform github.com/yannh/kubeconform/cmd/kubeconform "$KUBECONFORM_VERSION")
builder=$(go_tool builder go.opentelemetry.io/collector/cmd/builder "$COLLECTOR_VERSION")

# The collector, rebuilt when its manifest changes.
manifest=$repo/deploy/tools/otelcol-builder.yaml
otelcol_dir=$cache/otelcol-$(sha256sum "$manifest" | cut -c1-16)
if [ ! -x "$otelcol_dir/otelcol-userattrs" ]; then
  log "building the OpenTelemetry Collector from $manifest"
  rm -rf "$otelcol_dir.tmp"
  "$builder" --config "$manifest" --output-path "$otelcol_dir.tmp" >"$cache/otelcol-build.log" 2>&1 ||
    { cat "$cache/otelcol-build.log" >&2; exit 1; }
  rm -rf "$otelcol_dir" && mv "$otelcol_dir.tmp" "$otelcol_dir"
fi

# The Kubernetes JSON schemas for kubeconform, offline: the ones PyPI's
# kubernetes-validate ships, with their shared definitions put into each
# file (kubeconform does not follow a $ref to another file).
schemas=$cache/kubernetes-schemas-$KUBERNETES_VALIDATE_VERSION
if [ ! -f "$schemas/.complete" ]; then
  log "fetching kubernetes-validate $KUBERNETES_VALIDATE_VERSION from PyPI"
  rm -rf "$schemas" && mkdir -p "$schemas"
  python3 -m venv "$schemas/venv" >&2
  "$schemas/venv/bin/pip" install -q --disable-pip-version-check "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" >&2
  "$schemas/venv/bin/python" "$repo/deploy/tools/inline-schemas.py" "$schemas/venv" "$schemas/json" >&2
  rm -rf "$schemas/venv"
  touch "$schemas/.complete"
fi

echo "export OPS_PROMTOOL=$promtool"
echo "export OPS_HELM=$helm"
echo "export OPS_KUBECONFORM=$kubeconform"
echo "export OPS_OTELCOL=$otelcol_dir/otelcol-userattrs"
echo "export OPS_KUBE_SCHEMAS=$schemas/json"
