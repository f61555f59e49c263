#!/bin/sh
# build.sh: build the helm CLI from the Go module proxy into a version-keyed
# cache directory, for deploy/helm_test.go (helm lint and helm template of
# deploy/helm/corral).
#
#   scripts/helm/build.sh                  # build if missing, print the binary's dir
#   HELM_BUILD_FORCE=1 scripts/helm/build.sh   # rebuild
#
# Output: ${XDG_CACHE_HOME:-$HOME/.cache}/corral/helm-$HELM_VERSION/helm
# The last line on stdout is that directory. Nothing of Helm is committed to
# corral: `go install` fetches helm.sh/helm/v4 from the module proxy.
# Cold build: 2414 s here (2 cores shared with other builds, load ~30); the
# Go build cache makes a rebuild fast; instant once cached.
set -eu

HELM_VERSION=${HELM_VERSION:-v4.3.2}
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/corral/helm-$HELM_VERSION
GO=${GO:-go}

if [ -z "${HELM_BUILD_FORCE:-}" ] && [ -x "$CACHE/helm" ]; then
	echo "build.sh: cached, nothing to do" >&2
	echo "$CACHE"
	exit 0
fi

start=$(date +%s)
mkdir -p "$CACHE"
# Outside any module (the corral module must not gain helm's requirements).
cd "${TMPDIR:-/tmp}"
GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0 GOBIN="$CACHE" \
	"$GO" install "helm.sh/helm/v4/cmd/helm@$HELM_VERSION"
"$CACHE/helm" version >&2
echo "build.sh: built helm $HELM_VERSION in $(($(date +%s) - start)) s" >&2
echo "$CACHE"
