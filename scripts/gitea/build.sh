#!/bin/sh
# build.sh: build Gitea and gitea-runner from the Go module proxy into a
# version-keyed cache directory, for corral's end-to-end tests (test/gitea).
#
#   scripts/gitea/build.sh            # build if missing, print the binaries' dir
#   GITEA_BUILD_FORCE=1 scripts/gitea/build.sh   # rebuild
#
# Output: ${XDG_CACHE_HOME:-$HOME/.cache}/corral/gitea-$GITEA_VERSION-runner-$RUNNER_VERSION/{gitea,gitea-runner}
# The last line on stdout is that directory. Nothing of Gitea is committed to corral:
# the sources come from the module proxy at build time (see /work/shared/forges.md,
# "Running a real Gitea and its runner here", for why each step is needed):
#   - code.gitea.io/gitea@v1.27.3 declares `module gitea.dev`, which the proxy does not
#     serve under that path: a wrapper module requires gitea.dev and replaces it with a
#     writable copy of the downloaded module (gitea-src);
#   - services/migrations/gitea_downloader*.go are removed from the copy: they are the
#     only users of gitea.dev/sdk, which is not served (a local empty stub satisfies
#     the module graph);
#   - gitea.dev/actions-proto-go comes from code.gitea.io/actions-proto-go, and
#     gitlab.com/gitlab-org/api/client-go/v2 v2.42.0 (not served) from v2.43.0;
#   - embedded assets are generated with Gitea's own assetfs.GenerateEmbedBindata so
#     that `-tags bindata` yields a binary that runs from any directory.
# Cold build ~7-9 min on 2 cores (Go build cache warm afterwards); idempotent.
set -eu

GITEA_VERSION=${GITEA_VERSION:-1.27.3}
RUNNER_VERSION=${RUNNER_VERSION:-1.0.8}
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/corral/gitea-$GITEA_VERSION-runner-$RUNNER_VERSION
GO=${GO:-go}

start=$(date +%s)
if [ -z "${GITEA_BUILD_FORCE:-}" ] && [ -x "$CACHE/gitea" ] && [ -x "$CACHE/gitea-runner" ]; then
	echo "build.sh: cached, nothing to do (0 s)" >&2
	echo "$CACHE"
	exit 0
fi

mkdir -p "$CACHE"
work=$(mktemp -d "${TMPDIR:-/tmp}/corral-gitea-build.XXXXXX")
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT INT TERM

export GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0

# ---- gitea-runner --------------------------------------------------------
if [ -n "${GITEA_BUILD_FORCE:-}" ] || [ ! -x "$CACHE/gitea-runner" ]; then
	t0=$(date +%s)
	mkdir -p "$work/runner"
	cd "$work/runner"
	cat >go.mod <<MOD
module corral.local/gitea-runner-build

go 1.26

require gitea.com/gitea/runner v$RUNNER_VERSION
MOD
	cat >tools.go <<'SRC'
//go:build tools

package tools

import _ "gitea.com/gitea/runner"
SRC
	$GO mod download gitea.com/gitea/runner
	$GO get gitea.com/gitea/runner@v$RUNNER_VERSION >&2
	$GO build -trimpath -ldflags "-s -w -X gitea.com/gitea/runner/internal/pkg/ver.version=v$RUNNER_VERSION" \
		-o "$CACHE/gitea-runner.tmp" gitea.com/gitea/runner
	mv "$CACHE/gitea-runner.tmp" "$CACHE/gitea-runner"
	echo "build.sh: gitea-runner v$RUNNER_VERSION built in $(($(date +%s) - t0)) s" >&2
fi

# ---- gitea ---------------------------------------------------------------
if [ -n "${GITEA_BUILD_FORCE:-}" ] || [ ! -x "$CACHE/gitea" ]; then
	t0=$(date +%s)
	src=$($GO mod download -json "code.gitea.io/gitea@v$GITEA_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
	[ -d "$src" ] || { echo "build.sh: cannot download code.gitea.io/gitea@v$GITEA_VERSION" >&2; exit 1; }
	mkdir -p "$work/gitea"
	cd "$work/gitea"
	cp -R "$src" gitea-src
	chmod -R u+w gitea-src
	rm -f gitea-src/services/migrations/gitea_downloader*.go
	mkdir sdk-stub
	printf 'module gitea.dev/sdk\n\ngo 1.26\n' >sdk-stub/go.mod

	# Mirror Gitea's own replace lines so upstream's exact versions are kept.
	upstream=$(sed -n 's/^replace \(.*\)$/replace \1/p' gitea-src/go.mod | sed 's| //.*||')
	cat >go.mod <<MOD
module corral.local/gitea-build

go 1.26.4

require gitea.dev v$GITEA_VERSION

replace gitea.dev => ./gitea-src

replace gitea.dev/sdk => ./sdk-stub

replace gitea.dev/actions-proto-go => code.gitea.io/actions-proto-go v0.6.0

replace gitlab.com/gitlab-org/api/client-go/v2 => gitlab.com/gitlab-org/api/client-go/v2 v2.43.0

$upstream
MOD
	cat >tools.go <<'SRC'
//go:build tools

package tools

import _ "gitea.dev"
SRC
	cp gitea-src/go.sum go.sum
	$GO mod tidy -e >&2 || true

	# Embedded assets (what `make generate-backend` does with -tags bindata).
	mkdir -p gen
	cat >gen/main.go <<'SRC'
package main

import (
	"fmt"
	"os"

	"gitea.dev/modules/assetfs"
)

func main() {
	for i := 1; i+1 < len(os.Args); i += 2 {
		if err := assetfs.GenerateEmbedBindata(os.Args[i], os.Args[i+1]); err != nil {
			fmt.Fprintln(os.Stderr, "bindata:", os.Args[i], err)
			os.Exit(1)
		}
	}
}
SRC
	g=gitea-src
	$GO run ./gen \
		$g/options $g/modules/options/bindata.dat \
		$g/templates $g/modules/templates/bindata.dat \
		$g/public $g/modules/public/bindata.dat \
		$g/modules/migration/schemas $g/modules/migration/bindata.dat
	$GO build -trimpath -tags bindata \
		-ldflags "-s -w -X main.Version=$GITEA_VERSION -X main.Tags=bindata" \
		-o "$CACHE/gitea.tmp" gitea.dev
	mv "$CACHE/gitea.tmp" "$CACHE/gitea"
	echo "build.sh: gitea $GITEA_VERSION built in $(($(date +%s) - t0)) s" >&2
fi

echo "build.sh: done in $(($(date +%s) - start)) s" >&2
echo "$CACHE"
