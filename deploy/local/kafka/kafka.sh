#!/usr/bin/env bash
# Run a single-node KRaft Kafka broker from Maven Central artifacts.
#
#   kafka.sh fetch   LIBDIR
#   kafka.sh prepare LIBDIR CONFDIR DATADIR PORT CONTROLLER_PORT
#   kafka.sh run     LIBDIR CONFDIR
#
# Environment: KAFKA_HEAP_OPTS (default "-Xms256m -Xmx512m"), KAFKA_OPTS (extra
# JVM flags), MVN (maven executable, default "mvn").
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
POM="$SCRIPT_DIR/pom.xml"
LOG4J_CONFIG="$SCRIPT_DIR/log4j.properties"
SERVER_TEMPLATE="$SCRIPT_DIR/server.properties.tmpl"

die() { echo "kafka.sh: $*" >&2; exit 1; }

usage() {
    sed -n '2,10s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
    exit 2
}

# Maven resolves a relative outputDirectory against the pom's directory, and
# the broker resolves log.dirs against its cwd; make both caller-relative.
abspath() {
    case "$1" in
        /*) printf '%s\n' "$1" ;;
        *) printf '%s\n' "$PWD/$1" ;;
    esac
}

kafka_version() {
    local v
    v="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$POM")"
    [[ -n "$v" ]] || die "cannot read kafka.version from $POM"
    printf '%s\n' "$v"
}

require_libs() {
    local libdir="$1" version
    version="$(kafka_version)"
    [[ -f "$libdir/kafka_2.13-$version.jar" ]] \
        || die "$libdir has no kafka_2.13-$version.jar; run: kafka.sh fetch $libdir"
}

cmd_fetch() {
    [[ $# -eq 1 ]] || usage
    local libdir version staging
    libdir="$(abspath "$1")"
    libdir="${libdir%/}"
    version="$(kafka_version)"

    [[ -f "$libdir/kafka_2.13-$version.jar" ]] && return 0
    # Mixing two Kafka versions on one classpath fails in confusing ways.
    if compgen -G "$libdir/*.jar" >/dev/null; then
        die "$libdir holds jars but not kafka_2.13-$version.jar; remove it and fetch again"
    fi

    # Copy into a staging dir so an interrupted fetch never leaves a LIBDIR
    # that has the kafka jar (our "done" marker) but lacks dependencies.
    staging="$libdir.partial.$$"
    rm -rf "$staging"
    # shellcheck disable=SC2064  # expand now: $staging is local to this function
    trap "rm -rf $(printf '%q' "$staging")" EXIT
    echo "kafka.sh: resolving Kafka $version into $libdir" >&2
    "${MVN:-mvn}" -q -B -f "$POM" dependency:copy-dependencies -Dkafka.libs="$staging"
    mkdir -p "$libdir"
    mv "$staging"/*.jar "$libdir"/
    rmdir "$staging"
    trap - EXIT
}

# shellcheck disable=SC2016  # the single-quoted ${...} are literal placeholders
render_template() {
    local port="$1" controller_port="$2" data_dir="$3" text
    text="$(<"$SERVER_TEMPLATE")"
    text="${text//'${KAFKA_PORT}'/"$port"}"
    text="${text//'${KAFKA_CONTROLLER_PORT}'/"$controller_port"}"
    text="${text//'${DATA_DIR}'/"$data_dir"}"
    if [[ "$text" == *'${'* ]]; then
        die "unsubstituted placeholder left in $SERVER_TEMPLATE"
    fi
    printf '%s\n' "$text"
}

# Kafka cluster ids are 16 random bytes as unpadded base64url (22 chars).
# Skip ids starting with '-': the CLI parser would read them as an option.
random_cluster_id() {
    local id
    while :; do
        id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | cut -c1-22)"
        [[ "$id" != -* ]] && break
    done
    printf '%s\n' "$id"
}

cmd_prepare() {
    [[ $# -eq 5 ]] || usage
    local libdir confdir datadir port controller_port props cluster_id
    libdir="$(abspath "$1")"
    confdir="$(abspath "$2")"
    datadir="$(abspath "$3")"
    port="$4"
    controller_port="$5"
    [[ "$port" =~ ^[0-9]+$ ]] || die "PORT must be a number, got '$port'"
    [[ "$controller_port" =~ ^[0-9]+$ ]] || die "CONTROLLER_PORT must be a number, got '$controller_port'"
    [[ "$port" != "$controller_port" ]] || die "PORT and CONTROLLER_PORT must differ"
    require_libs "$libdir"

    mkdir -p "$confdir" "$datadir"
    props="$confdir/server.properties"
    render_template "$port" "$controller_port" "$datadir" >"$props.tmp"
    mv "$props.tmp" "$props"

    if [[ ! -f "$datadir/meta.properties" ]]; then
        cluster_id="$(random_cluster_id)"
        java -Dlog4j.configuration="file:$LOG4J_CONFIG" -cp "$libdir/*" \
            kafka.tools.StorageTool format -t "$cluster_id" -c "$props"
    fi
}

cmd_run() {
    [[ $# -eq 2 ]] || usage
    local libdir confdir
    libdir="$(abspath "$1")"
    confdir="$(abspath "$2")"
    require_libs "$libdir"
    [[ -f "$confdir/server.properties" ]] \
        || die "$confdir/server.properties missing; run: kafka.sh prepare ..."

    # KAFKA_HEAP_OPTS/KAFKA_OPTS are deliberately unquoted: they hold flag lists.
    # shellcheck disable=SC2086
    exec java \
        ${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m} \
        -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
        -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent \
        -XX:+ExitOnOutOfMemoryError \
        -Djava.awt.headless=true \
        -Dlog4j.configuration="file:$LOG4J_CONFIG" \
        ${KAFKA_OPTS:-} \
        -cp "$libdir/*" \
        kafka.Kafka "$confdir/server.properties"
}

[[ $# -ge 1 ]] || usage
command="$1"
shift
case "$command" in
    fetch) cmd_fetch "$@" ;;
    prepare) cmd_prepare "$@" ;;
    run) cmd_run "$@" ;;
    -h | --help | help) usage ;;
    *) usage ;;
esac
