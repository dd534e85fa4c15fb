#!/usr/bin/env bash
# Build the embedded FerretDB v1 launcher (MongoDB wire-protocol server for local dev/tests).
#
# Usage: build.sh OUTPUT_BINARY
#
# Uses Go's normal module and build caches, so rebuilds are fast. The build is
# skipped when OUTPUT_BINARY already exists and is newer than main.go, go.mod and go.sum.
set -euo pipefail

if [[ $# -ne 1 ]]; then
    echo "usage: $0 OUTPUT_BINARY" >&2
    exit 2
fi

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

out="$1"
# Make OUTPUT absolute relative to the caller's working directory, since we cd below.
case "$out" in
    /*) ;;
    *) out="$PWD/$out" ;;
esac

if [[ -f "$out" && "$out" -nt "$script_dir/main.go" && "$out" -nt "$script_dir/go.mod" && "$out" -nt "$script_dir/go.sum" ]]; then
    echo "ferretdb: $out is up to date, skipping build" >&2
    exit 0
fi

go_bin="go"
if ! command -v "$go_bin" >/dev/null 2>&1; then
    if [[ -x /usr/local/go/bin/go ]]; then
        go_bin=/usr/local/go/bin/go
    else
        echo "ferretdb: 'go' not found in PATH (and not at /usr/local/go/bin/go)" >&2
        exit 1
    fi
fi

mkdir -p "$(dirname "$out")"
cd "$script_dir"
echo "ferretdb: building $out" >&2
# Build to a temp file first so an interrupted build never leaves a stale/partial binary
# that the freshness check above would accept.
tmp="$out.tmp.$$"
trap 'rm -f "$tmp"' EXIT
"$go_bin" build -trimpath -o "$tmp" .
mv -f "$tmp" "$out"
trap - EXIT
