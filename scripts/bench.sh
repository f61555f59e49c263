#!/usr/bin/env bash
# Runs corral's benchmarks, one command each, as docs/benchmarks.md quotes
# them. PostgreSQL benchmarks start a throwaway server (see README).
set -euo pipefail
cd "$(dirname "$0")/.."
run() { echo "\$ $*"; "$@" 2>&1 | grep -E '^(Benchmark|ok|FAIL|---)' ; echo; }
run go test -run '^$' -bench 'BenchmarkIngest' -benchtime 5s ./internal/webhook/
run go test -run '^$' -bench 'BenchmarkOverhead' -benchtime 2000x ./internal/app/
run go test -run '^$' -bench 'BenchmarkGitHubPath' -benchtime 1000x ./internal/app/
run go test -run '^$' -bench 'BenchmarkPass' -benchtime 10x ./internal/reconciler/
run go test -run '^$' -bench 'BenchmarkServeRSS' -benchtime 1x ./test/e2e/
run go test -run '^$' -bench 'BenchmarkRoute' -benchtime 2s ./internal/route/
run go test -run '^$' -bench 'BenchmarkProvider_Create' -benchtime 50x ./internal/provider/process/
run go test -run '^$' -bench 'BenchmarkCreateToStarted' -benchtime 30x ./internal/provider/docker/
run go test -run '^$' -bench 'BenchmarkPlugin_List' -benchtime 100x ./internal/provider/plugin/
run go test -run '^$' -bench 'BenchmarkPlugin_Create' -benchtime 30x ./internal/provider/plugin/
run go test -run '^$' -bench 'BenchmarkShoes_Start' -benchtime 30x ./internal/provider/shoes/
run go test -run '^$' -bench 'BenchmarkShoes_AddInstance' -benchtime 30x ./internal/provider/shoes/
