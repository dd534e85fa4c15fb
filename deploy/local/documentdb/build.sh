#!/usr/bin/env bash
# Build DocumentDB (its PostgreSQL extensions and its MongoDB wire-protocol gateway) and the
# extensions it requires (pg_cron, pgvector) from the vendored source archives.
#
# Usage: build.sh VENDOR_DIR OUT_DIR PG_CONFIG
#
# OUT_DIR (under the cache, keyed by the archives' checksums by the caller) receives:
#   stage/      the extensions as `make install DESTDIR=stage` lays them out
#   gateway/documentdb_gateway
#   built       written last: its presence says the build is complete
# The caller copies stage/ over / (the extensions must sit in PostgreSQL's own directories).
#
# Debian 12's libbson (1.23) is older than the 1.28 upstream builds with; the one thing the
# extension needs from the newer one is BSON_SUBTYPE_SENSITIVE, defined here. COPT does not
# reach the LLVM bitcode rule, hence with_llvm=no.
set -euo pipefail

if [[ $# -ne 3 ]]; then
    echo "usage: $0 VENDOR_DIR OUT_DIR PG_CONFIG" >&2
    exit 2
fi
vendor="$(cd "$1" && pwd)"
out="$2"
pg_config="$3"
jobs="$(nproc)"

mkdir -p "$out"
out="$(cd "$out" && pwd)"
work="$out/src"
stage="$out/stage"
rm -rf "$work" "$stage" "$out/built"
mkdir -p "$work" "$stage" "$out/gateway"

(cd "$vendor" && sha256sum --check --quiet SHA256SUMS)

unpack() {  # archive -> the directory it unpacks to
    local archive="$vendor/$1" dir
    dir="$(tar -tzf "$archive" | head -1 | cut -d/ -f1)"
    tar -xzf "$archive" -C "$work"
    echo "$work/$dir"
}

pgxs() {  # directory, extra make arguments...
    local dir="$1"
    shift
    make -C "$dir" -j"$jobs" PG_CONFIG="$pg_config" with_llvm=no "$@" >/dev/null
    make -C "$dir" PG_CONFIG="$pg_config" with_llvm=no DESTDIR="$stage" "$@" install >/dev/null
}

echo "documentdb: pg_cron" >&2
pgxs "$(unpack pg_cron-1.6.3.tar.gz)"
echo "documentdb: pgvector" >&2
# Not built for this CPU only (-march=native by default).
pgxs "$(unpack pgvector-0.8.0.tar.gz)" OPTFLAGS=""

documentdb="$(unpack documentdb-b2e220c.tar.gz)"
# Intel's decimal library from Debian (libintelrdfpmath-dev) under the name the build asks
# pkg-config for.
mkdir -p "$work/pkgconfig"
cat >"$work/pkgconfig/intelmathlib.pc" <<'EOF'
Name: intelmathlib
Description: Intel decimal floating-point math library (Debian's libintelrdfpmath-dev)
Version: 2.0u3
Cflags: -I/usr/include
Libs: -lbidgcc000
EOF
export PKG_CONFIG_PATH="$work/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
echo "documentdb: pg_documentdb_core" >&2
pgxs "$documentdb/pg_documentdb_core" COPT='-DBSON_SUBTYPE_SENSITIVE=0x08 -Wno-error=switch'
echo "documentdb: pg_documentdb" >&2
# pg_documentdb includes pg_documentdb_core's headers and links against nothing of it at
# build time; it finds the core's shared library at run time.
pgxs "$documentdb/pg_documentdb" COPT='-DBSON_SUBTYPE_SENSITIVE=0x08 -Wno-error=switch'

echo "documentdb: the gateway (cargo build --release --locked)" >&2
export CARGO_TARGET_DIR="$out/target"
(cd "$documentdb/pg_documentdb_gw" && cargo build --release --locked --quiet)
cp "$CARGO_TARGET_DIR/release/documentdb_gateway" "$out/gateway/documentdb_gateway"
# The target directory is ~400 MB; the binary is all we keep (cargo keeps its registry cache).
rm -rf "$CARGO_TARGET_DIR" "$work"
date -u +%FT%TZ >"$out/built"
echo "documentdb: built into $out" >&2
