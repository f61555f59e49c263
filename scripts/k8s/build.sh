#!/bin/sh
# build.sh: build kube-apiserver, kube-scheduler and etcd from the Go module
# proxy into a version-keyed cache directory, for the kubernetes provider's
# tests (internal/testutil/kubetest starts them on 127.0.0.1).
#
#   scripts/k8s/build.sh                 # build if missing, print the binaries' dir
#   K8S_BUILD_FORCE=1 scripts/k8s/build.sh   # rebuild
#
# Output: ${XDG_CACHE_HOME:-$HOME/.cache}/corral/k8s-v$K8S_VERSION/{kube-apiserver,kube-scheduler,kubelet,etcd}
# (kubelet is for the one-node tier in test/k8snode: internal/testutil/kubetest
# runs it with Debian's containerd and runc in a private namespace.)
# The last line on stdout is that directory. Nothing of Kubernetes is committed
# to corral and corral's go.mod is untouched: the build happens in a temporary
# wrapper module.
#   - k8s.io/kubernetes@v1.37.2 refers to its staging modules (k8s.io/api,
#     k8s.io/apiserver, ...) through `replace => ./staging/src/...` lines, which
#     a module that depends on it does not inherit: the wrapper replaces each
#     of them with its published v0.37.2 (the list is read from upstream's go.mod).
#   - etcd is go.etcd.io/etcd/server/v3 v3.7.3 (Debian bookworm's etcd-server is
#     3.4, older than what this apiserver is tested with upstream).
# Cold build ~15 min on 2 cores (Go build cache warm afterwards); idempotent.
set -eu

K8S_VERSION=${K8S_VERSION:-1.37.2}
ETCD_VERSION=${ETCD_VERSION:-3.7.3}
STAGING_VERSION=v0.${K8S_VERSION#1.}
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/corral/k8s-v$K8S_VERSION
GO=${GO:-go}

start=$(date +%s)
if [ -z "${K8S_BUILD_FORCE:-}" ] && [ -x "$CACHE/kube-apiserver" ] && [ -x "$CACHE/kube-scheduler" ] && [ -x "$CACHE/kubelet" ] && [ -x "$CACHE/etcd" ]; then
	echo "build.sh: cached, nothing to do (0 s)" >&2
	echo "$CACHE"
	exit 0
fi

mkdir -p "$CACHE"
work=$(mktemp -d "${TMPDIR:-/tmp}/corral-k8s-build.XXXXXX")
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT INT TERM

export GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0

# ---- etcd ----------------------------------------------------------------
if [ -n "${K8S_BUILD_FORCE:-}" ] || [ ! -x "$CACHE/etcd" ]; then
	t0=$(date +%s)
	# Not `go install ...@v3.7.3`: the server's go.mod has replace lines
	# (../api, ../pkg, ...) that `go install` refuses; a wrapper module
	# requires it instead, and the siblings resolve to their v3.7.3.
	mkdir -p "$work/etcd"
	cd "$work/etcd"
	printf 'module corral.local/etcd-build\n\ngo 1.26\n\nrequire go.etcd.io/etcd/server/v3 v%s\n' "$ETCD_VERSION" >go.mod
	printf '//go:build tools\n\npackage tools\n\nimport _ "go.etcd.io/etcd/server/v3"\n' >tools.go
	$GO mod tidy >&2
	$GO build -trimpath -ldflags "-s -w" -o "$CACHE/etcd.tmp" go.etcd.io/etcd/server/v3
	mv "$CACHE/etcd.tmp" "$CACHE/etcd"
	echo "build.sh: etcd v$ETCD_VERSION built in $(($(date +%s) - t0)) s" >&2
fi

# ---- kube-apiserver, kube-scheduler, kubelet ----------------------------
if [ -n "${K8S_BUILD_FORCE:-}" ] || [ ! -x "$CACHE/kube-apiserver" ] || [ ! -x "$CACHE/kube-scheduler" ] || [ ! -x "$CACHE/kubelet" ]; then
	t0=$(date +%s)
	mod=$($GO mod download -json "k8s.io/kubernetes@v$K8S_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
	[ -f "$mod" ] || { echo "build.sh: cannot download k8s.io/kubernetes@v$K8S_VERSION" >&2; exit 1; }
	mkdir -p "$work/k8s"
	cd "$work/k8s"
	{
		printf 'module corral.local/k8s-build\n\ngo 1.26\n\nrequire k8s.io/kubernetes v%s\n\n' "$K8S_VERSION"
		sed -n 's|^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*$|replace \1 => \1 '"$STAGING_VERSION"'|p' "$mod"
	} >go.mod
	cat >tools.go <<'SRC'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
SRC
	$GO mod tidy >&2
	ld="-s -w -X k8s.io/component-base/version.gitVersion=v$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${K8S_VERSION#1.}"
	ld="$ld -X k8s.io/client-go/pkg/version.gitVersion=v$K8S_VERSION"
	for cmd in kube-apiserver kube-scheduler kubelet; do
		[ -z "${K8S_BUILD_FORCE:-}" ] && [ -x "$CACHE/$cmd" ] && continue
		t1=$(date +%s)
		$GO build -trimpath -ldflags "$ld" -o "$CACHE/$cmd.tmp" "k8s.io/kubernetes/cmd/$cmd"
		mv "$CACHE/$cmd.tmp" "$CACHE/$cmd"
		echo "build.sh: $cmd v$K8S_VERSION built in $(($(date +%s) - t1)) s" >&2
	done
	echo "build.sh: kubernetes v$K8S_VERSION built in $(($(date +%s) - t0)) s" >&2
fi

echo "build.sh: done in $(($(date +%s) - start)) s" >&2
echo "$CACHE"
