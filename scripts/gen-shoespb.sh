#!/bin/sh
# Regenerates the Go code of the shoes protocol (internal/provider/shoes/shoespb)
# from shoes.proto. CI does not run it: the generated files are committed.
# Needs protoc (Debian: protobuf-compiler) and, on PATH, protoc-gen-go and
# protoc-gen-go-grpc from the Go module proxy:
#   go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
#   go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
set -eu
cd "$(dirname "$0")/../internal/provider/shoes/shoespb"
protoc --proto_path=. \
	--go_out=. --go_opt=paths=source_relative \
	--go-grpc_out=. --go-grpc_opt=paths=source_relative \
	shoes.proto
