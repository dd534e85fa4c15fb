"""Installing what the local stack runs: Debian packages, Kafka's jars, DocumentDB, Jaeger and
toxiproxy builds, private PostgreSQL clusters.

Locating a tool (`postgres_bin`, `kafka_libs`, ...) never installs it, so rendering the stack's
configuration starts no process; the `ensure_*`, `fetch_*` and `build_*` functions install.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import threading
from collections.abc import Mapping
from pathlib import Path

from stack_engine import StackError, run, say

LOCAL = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("CATALOG_CACHE_DIR", Path.home() / ".cache" / "catalog-cqrs"))
TOXIPROXY_VERSION = "v2.12.0"
JAEGER_PACKAGE = "github.com/jaegertracing/jaeger/cmd/jaeger"


# --------------------------------------------------------------------------- Debian


@functools.cache
def _apt_update() -> None:
    say("apt-get update")
    run(["apt-get", "update", "-qq"], env=_apt_env(), quiet=True)


def _apt_env() -> dict[str, str]:
    return {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}


# Parts are provisioned side by side; dpkg takes one install at a time.
_apt_lock = threading.Lock()


def apt_missing(*packages: str) -> list[str]:
    """The packages dpkg does not have installed."""
    listed = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Package} ${db:Status-Status}\\n", *packages],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split("\n")
    installed = {line.split()[0] for line in listed if line.endswith(" installed")}
    return [package for package in packages if package not in installed]


def apt_install_missing(*packages: str) -> None:
    """Install those of the Debian packages that are missing."""
    missing = apt_missing(*packages)
    if missing:
        apt_install(*missing)


def apt_install(*packages: str) -> None:
    """Install Debian packages without starting their system services."""
    with _apt_lock:
        _apt_install(*packages)


def _apt_install(*packages: str) -> None:
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


# --------------------------------------------------------------------------- DocumentDB

# DocumentDB's extensions are built for this PostgreSQL major version (Debian 12's).
DOCUMENTDB_PG = "15"
# What building and running DocumentDB needs from Debian: the server and its headers, the
# extensions it requires that Debian has (rum, PostGIS; tsm_system_rows ships in the server),
# and the libraries its build links (libbson, Intel's decimal library, PCRE2, ICU).
DOCUMENTDB_PACKAGES = (
    f"postgresql-{DOCUMENTDB_PG}",
    f"postgresql-server-dev-{DOCUMENTDB_PG}",
    f"postgresql-{DOCUMENTDB_PG}-rum",
    f"postgresql-{DOCUMENTDB_PG}-postgis-3",
    "libbson-dev",
    "libintelrdfpmath-dev",
    "libpcre2-dev",
    "libkrb5-dev",  # PostgreSQL's libpq-be.h includes gssapi/gssapi.h
    "libicu-dev",
    "pkg-config",
    "build-essential",
    "openssl",
)
# The vendored source archives (their README says where each comes from).
VENDOR_DEFAULT = LOCAL.parents[2] / "shared" / "vendor"


def vendor_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Where the source archives are: STACK_VENDOR_DIR, or ../shared/vendor beside the repo."""
    value = (environ if environ is not None else os.environ).get("STACK_VENDOR_DIR")
    return Path(value).resolve() if value else VENDOR_DEFAULT.resolve()


def documentdb_pg_bin() -> Path:
    """The bin directory of the PostgreSQL DocumentDB is built for."""
    return Path("/usr/lib/postgresql") / DOCUMENTDB_PG / "bin"


def documentdb_key(vendor: Path) -> str:
    """The build's cache key: the archives' checksums and the build script."""
    sums = vendor / "SHA256SUMS"
    if not sums.exists():
        raise StackError(
            f"no DocumentDB sources at {vendor} (SHA256SUMS missing); set STACK_VENDOR_DIR to "
            "the directory holding documentdb-*.tar.gz, pg_cron-*.tar.gz and pgvector-*.tar.gz"
        )
    digest = hashlib.sha256(sums.read_bytes())
    digest.update((LOCAL / "documentdb" / "build.sh").read_bytes())
    return digest.hexdigest()[:16]


def documentdb_dir(vendor: Path) -> Path:
    """Where the build of these archives is kept."""
    return CACHE / "documentdb" / documentdb_key(vendor)


def documentdb_gateway(vendor: Path) -> Path:
    """DocumentDB's MongoDB wire-protocol gateway of these archives."""
    return documentdb_dir(vendor) / "gateway" / "documentdb_gateway"


def _cargo() -> str | None:
    found = shutil.which("cargo") or str(Path.home() / ".cargo" / "bin" / "cargo")
    return found if Path(found).exists() else None


_documentdb_lock = threading.Lock()


def ensure_documentdb(vendor: Path) -> None:
    """DocumentDB built from the archives (once per checksum) and installed into PostgreSQL."""
    with _documentdb_lock:
        apt_install_missing(*DOCUMENTDB_PACKAGES)
        out = documentdb_dir(vendor)
        if not (out / "built").exists():
            cargo = _cargo()
            if cargo is None:
                raise StackError("cargo is needed to build DocumentDB's gateway; install Rust")
            say("building DocumentDB from the vendored sources (first time only: ~6 minutes)")
            path = f"{Path(cargo).parent}:{os.environ.get('PATH', '')}"
            run(
                [
                    *("bash", str(LOCAL / "documentdb" / "build.sh"), str(vendor), str(out)),
                    str(documentdb_pg_bin().parent / "bin" / "pg_config"),
                ],
                env={**os.environ, "PATH": path},
                quiet=True,
            )
        install_tree(out / "stage")


def install_tree(stage: Path) -> None:
    """Copy a `make install DESTDIR=` tree over /: only files that differ, each replaced by a
    rename, so a server that has a library loaded keeps its mapping."""
    for source in stage.rglob("*"):
        if source.is_dir():
            continue
        target = Path("/") / source.relative_to(stage)
        stat = source.stat()
        if target.exists():
            have = target.stat()
            if have.st_size == stat.st_size and int(have.st_mtime) == int(stat.st_mtime):
                continue
        if os.geteuid() != 0:
            raise StackError(f"{target} must be installed (needs root): run stackctl as root")
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.partial")
        shutil.copy2(source, partial)
        os.replace(partial, target)


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


def promtool_binary() -> Path:
    """promtool, the rules' checker and unit-test runner (Debian's `prometheus` package)."""
    return Path("/usr/bin/promtool")


def prometheus_binary() -> Path:
    """The Prometheus server (Debian's `prometheus` package)."""
    return Path("/usr/bin/prometheus")


def ensure_prometheus() -> None:
    """Prometheus and promtool from Debian when missing: a prebuilt binary, no Go build."""
    if not (prometheus_binary().exists() and promtool_binary().exists()):
        apt_install("prometheus")


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


def init_cluster(
    run_dir: Path, name: str, user: str, password: str, *, bin_dir: Path | None = None
) -> None:
    """A private PostgreSQL cluster with one password-protected superuser, created once (by
    the newest PostgreSQL installed, or the one of `bin_dir`)."""
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
                str((bin_dir or postgres_bin()) / "initdb"),
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
