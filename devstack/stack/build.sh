#!/usr/bin/env bash
# Builds the real third-party parts of the local stack from their published Go modules into a
# version-keyed cache outside the repository. Each component is built once per version and reused.
#
#   devstack/stack/build.sh [etcd|kubernetes|argo|minio|pause|coredns|netpol|kustomize|traefik|all]...
#
# Nothing built here is committed; the cache lives in $WML_CACHE (default ~/.cache/workflow-middlelayer).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../../argo/versions.env
source "$here/../../argo/versions.env"
cache="${WML_CACHE:-$HOME/.cache/workflow-middlelayer}"
export GOFLAGS="${GOFLAGS:--buildvcs=false}" CGO_ENABLED=0
mkdir -p "$cache/bin" "$cache/build" "$cache/logs"

say() { printf '\033[1m[stack-build]\033[0m %s\n' "$*" >&2; }
command -v go >/dev/null || { say "a Go toolchain (>= 1.21; newer ones are fetched via GOTOOLCHAIN) is required"; exit 1; }

# done_marker NAME VERSION -> path of the directory that holds the finished binaries.
outdir() { echo "$cache/bin/$1-$2"; }
finished() { [ -f "$(outdir "$1" "$2")/.complete" ]; }
complete() { touch "$(outdir "$1" "$2")/.complete"; }

build_etcd() {
  local v="$ETCD_VERSION" out; out="$(outdir etcd "$v")"
  finished etcd "$v" && return 0
  say "building etcd $v — first run only (~2 min)"
  local mod="$cache/build/etcd-$v"; mkdir -p "$mod" "$out"
  # etcd's root module uses local replace directives, so we build its server package from a tiny
  # module of ours that calls the same entry point the official main does.
  cat >"$mod/main.go" <<'GO'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  (cd "$mod" && [ -f go.mod ] || (cd "$mod" && go mod init wml/etcd >/dev/null 2>&1))
  (cd "$mod" && go get "go.etcd.io/etcd/server/v3@$v" >/dev/null && go mod tidy >/dev/null && go build -o "$out/etcd" .)
  complete etcd "$v"
}

build_kubernetes() {
  local v="$KUBERNETES_VERSION" out; out="$(outdir kubernetes "$v")"
  finished kubernetes "$v" && return 0
  say "building kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy $v — first run only (~25 min on 2 cores)"
  local mod="$cache/build/kubernetes-$v"; mkdir -p "$mod" "$out"
  local staging="v0.${v#v1.}"
  # k8s.io/kubernetes replaces its staging modules with local paths; reproduce that set with the
  # published versions of the same modules so that the commands build as an ordinary dependency.
  local gomod; gomod="$(cd "$mod" && go mod download -json "k8s.io/kubernetes@$v" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')"
  {
    echo "module wml/kubernetes"
    echo
    grep '^go ' "$gomod"
    echo
    echo "require k8s.io/kubernetes $v"
    echo
    echo "replace ("
    sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#\t\1 => \1 '"$staging"'#p' "$gomod"
    echo ")"
  } >"$mod/go.mod"
  cat >"$mod/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
GO
  local ldv="k8s.io/component-base/version"
  local major minor; major="$(echo "${v#v}" | cut -d. -f1)"; minor="$(echo "${v#v}" | cut -d. -f2)"
  local ldflags="-s -w -X $ldv.gitVersion=$v -X $ldv.gitMajor=$major -X $ldv.gitMinor=$minor -X $ldv.gitTreeState=clean"
  ldflags="$ldflags -X k8s.io/client-go/pkg/version.gitVersion=$v"
  (cd "$mod" && go mod tidy -e >/dev/null 2>&1 || true)
  (cd "$mod" && go build -tags tools -ldflags "$ldflags" -o "$out/" \
      k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
      k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy)
  complete kubernetes "$v"
}

# Source of the pinned Argo module (read-only module cache); used for the build, CRDs and JSON schema.
argo_src() {
  (cd "$cache/build" && go mod download -json "github.com/argoproj/argo-workflows/v4@$ARGO_VERSION" \
    | sed -n 's/.*"Dir": "\(.*\)",/\1/p')
}

build_argo() {
  local v="$ARGO_VERSION" out; out="$(outdir argo "$v")"
  finished argo "$v" && return 0
  say "building workflow-controller, argoexec, argo (server + CLI) $v — first run only (~15 min)"
  mkdir -p "$out"
  local src; src="$(argo_src)"
  # The argo binary embeds ui/dist/app, which the module does not ship (it is produced by the UI's
  # npm build). We build from a writable copy with a minimal placeholder page there.
  local work="$cache/build/argo-$v"
  if [ ! -f "$work/go.mod" ]; then
    rm -rf "$work"; cp -r "$src" "$work"; chmod -R u+w "$work"
  fi
  # Upstream's signal_linux.go is a symlink to signal_darwin.go; module zips drop symlinks, so
  # restore it as a copy (without it argoexec fails with "undefined: Setpgid").
  local os_dir="$work/workflow/executor/osspecific"
  [ -e "$os_dir/signal_linux.go" ] || cp "$os_dir/signal_darwin.go" "$os_dir/signal_linux.go"
  mkdir -p "$work/ui/dist/app"
  [ -f "$work/ui/dist/app/index.html" ] || cat >"$work/ui/dist/app/index.html" <<'HTML'
<!doctype html><title>Argo Workflows</title><p>Argo Server API is running. The web UI was not built for this local stack; use the API or the argo CLI.</p>
HTML
  local ldv="github.com/argoproj/argo-workflows/v4"
  local ldflags="-s -w -X $ldv.version=$v -X $ldv.gitTreeState=clean"
  (cd "$work" && go build -ldflags "$ldflags" -o "$out/" ./cmd/workflow-controller ./cmd/argoexec ./cmd/argo)
  complete argo "$v"
}

build_minio() {
  local v="$MINIO_VERSION" out; out="$(outdir minio "$v")"
  finished minio "$v" && return 0
  say "building minio $v — first run only (~8 min)"
  mkdir -p "$out"
  GOBIN="$out" go install "github.com/minio/minio@$v"
  complete minio "$v"
}

build_pause() {
  local v="$KUBERNETES_VERSION" out; out="$(outdir pause "$v")"
  finished pause "$v" && return 0
  say "building pause $v"
  mkdir -p "$out"
  local src; src="$(cd "$cache/build" && go mod download -json "k8s.io/kubernetes@$v" | sed -n 's/.*"Dir": "\(.*\)",/\1/p')"
  gcc -Os -static -DVERSION="$v" -o "$out/pause" "$src/build/pause/linux/pause.c"
  complete pause "$v"
}

build_coredns() {
  local v="$COREDNS_VERSION" out; out="$(outdir coredns "$v")"
  finished coredns "$v" && return 0
  say "building coredns $v — first run only (~5 min)"
  mkdir -p "$out"
  GOBIN="$out" go install "github.com/coredns/coredns@$v"
  complete coredns "$v"
}

# The NetworkPolicy engine: kube-router's network policy controller (firewall-only mode: iptables + ipset), the
# one engine that works on this kernel (kube-network-policies needs nftables' queue expression, which it lacks).
build_netpol() {
  local v="$NETPOL_VERSION" out; out="$(outdir netpol "$v")"
  finished netpol "$v" && return 0
  say "building kube-router $v — first run only (~2 min)"
  mkdir -p "$out"
  GOBIN="$out" go install "github.com/cloudnativelabs/kube-router/v2/cmd/kube-router@$v"
  complete netpol "$v"
}


build_kustomize() {
  local v="$KUSTOMIZE_VERSION" out; out="$(outdir kustomize "$v")"
  finished kustomize "$v" && return 0
  say "building kustomize $v — first run only (~2 min)"
  mkdir -p "$out"
  GOBIN="$out" go install "sigs.k8s.io/kustomize/kustomize/v5@$v"
  complete kustomize "$v"
}

# The ingress controller. Traefik's go.mod replaces modules with local paths, so it is built inside a
# writable copy of its module (as Argo is); its web UI ships in the module.
build_traefik() {
  local v="$TRAEFIK_VERSION" out; out="$(outdir traefik "$v")"
  finished traefik "$v" && return 0
  say "building traefik $v — first run only (~10 min)"
  mkdir -p "$out"
  local src work="$cache/build/traefik-$v"
  src="$(cd "$cache/build" && go mod download -json "github.com/traefik/traefik/v3@$v" | sed -n 's/.*"Dir": "\(.*\)",/\1/p')"
  if [ ! -f "$work/go.mod" ]; then
    rm -rf "$work"; cp -r "$src" "$work"; chmod -R u+w "$work"
  fi
  (cd "$work" && go build -ldflags "-s -w -X github.com/traefik/traefik/v3/pkg/version.Version=$v" -o "$out/traefik" ./cmd/traefik)
  complete traefik "$v"
}

print_paths() {
  echo "ETCD_BIN=$(outdir etcd "$ETCD_VERSION")"
  echo "KUBERNETES_BIN=$(outdir kubernetes "$KUBERNETES_VERSION")"
  echo "ARGO_BIN=$(outdir argo "$ARGO_VERSION")"
  echo "MINIO_BIN=$(outdir minio "$MINIO_VERSION")"
  echo "PAUSE_BIN=$(outdir pause "$KUBERNETES_VERSION")"
  echo "COREDNS_BIN=$(outdir coredns "$COREDNS_VERSION")"
  echo "NETPOL_BIN=$(outdir netpol "$NETPOL_VERSION")"
  echo "KUSTOMIZE_BIN=$(outdir kustomize "$KUSTOMIZE_VERSION")"
  echo "TRAEFIK_BIN=$(outdir traefik "$TRAEFIK_VERSION")"
  echo "ARGO_SRC=$(argo_src)"
}

targets=("$@"); [ ${#targets[@]} -eq 0 ] && targets=(all)
# One build at a time per cache (concurrent test sessions, `make stack-up` and CI may all ask).
if [ "${targets[*]}" != "paths" ]; then
  exec 9>"$cache/build/.lock"
  flock -n 9 || { say "another build is running; waiting for it"; flock 9; }
fi
# Build one component and, when it really had to be built, record how long it took.
timed_build() {
  local start elapsed; start=$(date +%s)
  # Go's module chatter (hundreds of "go: downloading …" lines on a cold cache) goes to the component's log only.
  "build_$1" 2> >(tee -a "$cache/logs/build-$1.log" | grep --line-buffered -v -E '^go: (downloading|added|finding|extracting|upgraded|found) ' >&2)
  elapsed=$(( $(date +%s) - start ))
  [ "$elapsed" -lt 2 ] || echo "$1 ${elapsed}s $(date -u +%FT%TZ)" >>"$cache/logs/build-times"
}

for t in "${targets[@]}"; do
  case "$t" in
    all) for c in pause etcd minio argo kubernetes coredns netpol kustomize traefik; do timed_build "$c"; done ;;
    etcd|kubernetes|argo|minio|pause|coredns|netpol|kustomize|traefik) timed_build "$t" ;;
    paths) print_paths ;;
    *) echo "unknown target: $t" >&2; exit 2 ;;
  esac
done
