"""Installing what the local stack runs: Debian packages, Kafka's jars, FerretDB and toxiproxy
builds, private PostgreSQL clusters.

Locating a tool (`postgres_bin`, `kafka_libs`, ...) never installs it, so rendering the stack's
configuration starts no process; the `ensure_*`, `fetch_*` and `build_*` functions install.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from stack_engine import StackError, run, say

LOCAL = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("CATALOG_CACHE_DIR", Path.home() / ".cache" / "catalog-cqrs"))
TOXIPROXY_VERSION = "v2.12.0"
# The Go module versions of Prometheus 3.x are v0.3xx.y.
PROMETHEUS_VERSION = "v0.316.0"
JAEGER_PACKAGE = "github.com/jaegertracing/jaeger/cmd/jaeger"


# --------------------------------------------------------------------------- Debian


@functools.cache
def _apt_update() -> None:
    say("apt-get update")
    run(["apt-get", "update", "-qq"], env=_apt_env(), quiet=True)


def _apt_env() -> dict[str, str]:
    return {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}


def apt_install(*packages: str) -> None:
    """Install Debian packages without starting their system services."""
    if os.geteuid() != 0:
        raise StackError(
            f"missing {' '.join(packages)}; install them (needs root): "
            f"apt-get install {' '.join(packages)}"
        )
    _apt_update()
    say(f"installing {' '.join(packages)} from Debian")
    policy = Path("/usr/sbin/policy-rc.d")
    created_policy = not policy.exists()
    if created_policy:
        # Keep the packages' own services (a cluster on 5432, nginx on 80) from starting.
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    createcluster = Path("/etc/postgresql-common/createcluster.conf")
    try:
        if "postgresql" in " ".join(packages) and not createcluster.exists():
            createcluster.parent.mkdir(parents=True, exist_ok=True)
            createcluster.write_text("create_main_cluster = false\n")
        run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
            env=_apt_env(),
            quiet=True,
        )
    finally:
        if created_policy:
            policy.unlink(missing_ok=True)


def _postgres_bins() -> list[Path]:
    return [
        initdb.parent
        for initdb in sorted(
            Path("/usr/lib/postgresql").glob("*/bin/initdb"),
            key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0,
        )
    ]


def ensure_postgres() -> None:
    """PostgreSQL's server binaries, from Debian when missing."""
    if not _postgres_bins():
        apt_install("postgresql")


def postgres_bin() -> Path:
    """The bin directory of the newest installed PostgreSQL."""
    found = _postgres_bins()
    if not found:
        raise StackError("PostgreSQL is not installed; `stackctl up` installs it")
    return found[-1]


def _nginx() -> str | None:
    return shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )


def ensure_nginx() -> None:
    """nginx, from Debian when missing."""
    if _nginx() is None:
        apt_install("nginx")


def nginx_bin() -> str:
    """The installed nginx executable."""
    found = _nginx()
    if found is None:
        raise StackError("nginx is not installed; `stackctl up` installs it")
    return found


def ensure_java_and_maven() -> None:
    """A JDK to run Kafka and Maven to fetch it, from Debian when missing."""
    missing = [
        p
        for p, exe in (("default-jdk-headless", "java"), ("maven", "mvn"))
        if shutil.which(exe) is None
    ]
    if missing:
        apt_install(*missing)


# --------------------------------------------------------------------------- Kafka, Go builds


def kafka_version() -> str:
    """The Kafka version deploy/local/kafka/pom.xml pins."""
    pom = (LOCAL / "kafka" / "pom.xml").read_text()
    return pom.split("<kafka.version>")[1].split("</kafka.version>")[0]


def kafka_libs() -> Path:
    """Where Kafka's jars are kept."""
    return CACHE / f"kafka-{kafka_version()}" / "libs"


def fetch_kafka() -> None:
    """Kafka's jars from Maven Central (Maven caches the downloads in ~/.m2)."""
    ensure_java_and_maven()
    version = kafka_version()
    if not (kafka_libs() / f"kafka_2.13-{version}.jar").exists():
        say(f"fetching Apache Kafka {version} from Maven Central")
        run(["bash", str(LOCAL / "kafka" / "kafka.sh"), "fetch", str(kafka_libs())])


def _go() -> str | None:
    found = shutil.which("go") or "/usr/local/go/bin/go"
    return found if Path(found).exists() else None


def ferretdb_binary() -> Path:
    """Where our FerretDB launcher of the current sources is built."""
    source = LOCAL / "ferretdb"
    digest = hashlib.sha256()
    for name in ("go.mod", "go.sum", "main.go"):
        digest.update((source / name).read_bytes())
    return CACHE / "ferretdb" / digest.hexdigest()[:16] / "ferretdb"


def build_ferretdb() -> None:
    """Our FerretDB launcher, built with `go build` (Go caches modules and builds)."""
    binary = ferretdb_binary()
    if binary.exists():
        return
    if _go() is None:
        raise StackError("Go is needed to build FerretDB; install Go 1.22 or newer")
    say("building FerretDB (first time only; Go caches the rest)")
    env = {**os.environ, "PATH": f"{os.environ.get('PATH', '')}:/usr/local/go/bin"}
    run(["bash", str(LOCAL / "ferretdb" / "build.sh"), str(binary)], env=env)


def toxiproxy_binary() -> Path:
    """Where Shopify's toxiproxy server is built."""
    return CACHE / "toxiproxy" / TOXIPROXY_VERSION / "toxiproxy-server"


def build_toxiproxy() -> None:
    """Shopify's toxiproxy server, built with `go install` from the Go module proxy."""
    binary = toxiproxy_binary()
    if binary.exists():
        return
    go = _go()
    if go is None:
        raise StackError("Go is needed to build toxiproxy; install Go 1.22 or newer")
    say(f"building toxiproxy {TOXIPROXY_VERSION} (first time only)")
    gobin = binary.parent / "tmp"
    run(
        [go, "install", f"github.com/Shopify/toxiproxy/v2/cmd/server@{TOXIPROXY_VERSION}"],
        env={**os.environ, "GOBIN": str(gobin), "GOFLAGS": "-mod=mod"},
        quiet=True,
    )
    (gobin / "server").rename(binary)
    gobin.rmdir()


def jaeger_binary() -> Path:
    """Where Jaeger (v2, all-in-one) of the pinned tool module is built."""
    source = LOCAL / "jaeger"
    digest = hashlib.sha256()
    for name in ("go.mod", "go.sum"):
        digest.update((source / name).read_bytes())
    return CACHE / "jaeger" / digest.hexdigest()[:16] / "jaeger"


def build_jaeger() -> None:
    """Jaeger, built from the Go module proxy through our tool module.

    `go install ...@version` refuses Jaeger's module (its go.mod has replace directives), so
    `deploy/local/jaeger` pins it with a `tool` directive and `go build` builds that package.
    """
    binary = jaeger_binary()
    if binary.exists():
        return
    go = _go()
    if go is None:
        raise StackError("Go is needed to build Jaeger; install Go 1.24 or newer")
    say("building Jaeger (first time only: several minutes on an empty Go cache)")
    binary.parent.mkdir(parents=True, exist_ok=True)
    partial = binary.with_suffix(".partial")
    run(
        [go, "build", "-trimpath", "-o", str(partial), JAEGER_PACKAGE],
        env={**os.environ, "GOFLAGS": "-mod=mod"},
        cwd=LOCAL / "jaeger",
        quiet=True,
    )
    partial.rename(binary)


def prometheus_dir() -> Path:
    """Where `prometheus` and `promtool` of PROMETHEUS_VERSION are built."""
    return CACHE / "prometheus" / PROMETHEUS_VERSION


def promtool_binary() -> Path:
    """promtool, the rules' checker and unit-test runner."""
    return prometheus_dir() / "promtool"


def prometheus_binary() -> Path:
    """The Prometheus server."""
    return prometheus_dir() / "prometheus"


def build_prometheus() -> None:
    """The Prometheus server and promtool, built with `go install` from the Go module proxy."""
    if prometheus_binary().exists() and promtool_binary().exists():
        return
    go = _go()
    if go is None:
        raise StackError("Go is needed to build Prometheus; install Go 1.24 or newer")
    say(f"building Prometheus {PROMETHEUS_VERSION} (first time only: several minutes)")
    gobin = prometheus_dir() / "tmp"
    shutil.rmtree(gobin, ignore_errors=True)
    module = "github.com/prometheus/prometheus/cmd"
    run(
        [
            go,
            "install",
            f"{module}/prometheus@{PROMETHEUS_VERSION}",
            f"{module}/promtool@{PROMETHEUS_VERSION}",
        ],
        env={**os.environ, "GOBIN": str(gobin), "GOFLAGS": "-mod=mod"},
        quiet=True,
    )
    for name in ("promtool", "prometheus"):  # the server last: its presence says "built"
        (gobin / name).rename(prometheus_dir() / name)
    gobin.rmdir()


# --------------------------------------------------------------------------- PostgreSQL


def as_postgres(cmd: list[str]) -> list[str]:
    """Run as the postgres user when we are root (PostgreSQL refuses to run as root)."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


def cluster_dir(run_dir: Path, name: str) -> Path:
    """Where a cluster placed by `place_cluster` is, without touching anything."""
    return (run_dir / name).resolve()


def place_cluster(run_dir: Path, name: str) -> Path:
    """The cluster's directory under the run dir, or beside it when postgres cannot reach it."""
    base = run_dir / name
    if os.geteuid() != 0:
        return base
    probe = subprocess.run(as_postgres(["test", "-x", str(run_dir)]), check=False)
    if probe.returncode == 0:
        return base
    # The run dir's parents are closed to other users (e.g. a clone under /root): keep the
    # cluster in a world-traversable place and point the run dir at it.
    key = hashlib.sha256(str(run_dir).encode()).hexdigest()[:12]
    outside = Path("/var/tmp") / f"catalog-cqrs-{name}-{key}"
    outside.mkdir(mode=0o700, exist_ok=True)
    shutil.chown(outside, "postgres", "postgres")
    if not base.is_symlink():
        if base.exists():
            shutil.rmtree(base)
        base.symlink_to(outside)
    return outside


def init_cluster(run_dir: Path, name: str, user: str, password: str) -> None:
    """A private PostgreSQL cluster with one password-protected superuser, created once."""
    ensure_postgres()
    base = place_cluster(run_dir, name)
    data = base / "data"
    if (data / "PG_VERSION").exists():
        return
    say(f"initializing a private PostgreSQL cluster ({name})")
    base.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
    pwfile = base / "pwfile"
    pwfile.write_text(password + "\n")
    if os.geteuid() == 0:
        shutil.chown(pwfile, "postgres", "postgres")
    run(
        as_postgres(
            [
                str(postgres_bin() / "initdb"),
                "-D",
                str(data),
                "-U",
                user,
                f"--pwfile={pwfile}",
                "--auth-host=scram-sha-256",
                "--auth-local=peer",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-instructions",
            ]
        ),
        quiet=True,
    )
    pwfile.unlink()
    (base / "socket").mkdir(exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(base / "socket", "postgres", "postgres")
