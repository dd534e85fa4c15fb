"""Pinned tools and third-party schemas the deploy tests need, fetched from package registries.

Nothing here is committed: kustomize is built from its Go module, the operators' CRDs come
from their Go modules (CloudNativePG, KEDA, Gateway API, MongoDB Community, the Prometheus
operator) or from Maven Central (Strimzi publishes its CRDs in the `tests` jar of
`io.strimzi:api`), and the compose specification's JSON Schema from compose-go. Each lands in
its own versioned directory under `~/.cache/catalog-cqrs/deploy-tests` (`CATALOG_CQRS_CACHE` or
`XDG_CACHE_HOME` move it), written to a temporary directory first and renamed into place, so an
interrupted run leaves no half cache behind. Bumping a version below fetches the new one on the
next run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import zipfile
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fnmatch import fnmatch
from functools import partial
from pathlib import Path


class Unobtainable(RuntimeError):
    """A pinned tool or schema could not be fetched (the deploy tests fail, never skip)."""


@dataclass(frozen=True)
class GoBinary:
    """A command built with `go install MODULE@VERSION`."""

    name: str
    package: str
    version: str

    @property
    def key(self) -> str:
        return f"{self.name}-{self.version}"


@dataclass(frozen=True)
class GoModuleFiles:
    """Files copied out of a Go module fetched with `go mod download` (GOPROXY)."""

    name: str
    module: str
    version: str
    patterns: tuple[str, ...]

    @property
    def key(self) -> str:
        return f"{self.name}-{self.version}"

    @property
    def origin(self) -> str:
        return f"Go module {self.module}@{self.version}"


@dataclass(frozen=True)
class MavenJarFiles:
    """Files extracted from a jar resolved from Maven Central with `mvn dependency:copy`."""

    name: str
    artifact: str  # groupId:artifactId:version:packaging[:classifier]
    patterns: tuple[str, ...]

    @property
    def version(self) -> str:
        return self.artifact.split(":")[2]

    @property
    def key(self) -> str:
        return f"{self.name}-{self.version}"

    @property
    def origin(self) -> str:
        return f"Maven Central {self.artifact}"


FileSource = GoModuleFiles | MavenJarFiles

# Oldest Kubernetes minor the manifests must be valid for (schemas bundled by kubernetes-validate).
KUBERNETES_VERSION = "1.31"

KUSTOMIZE = GoBinary("kustomize", "sigs.k8s.io/kustomize/kustomize/v5", "v5.8.1")
MAVEN_DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"

CRD_SOURCES: tuple[FileSource, ...] = (
    MavenJarFiles("strimzi", "io.strimzi:api:0.51.0:jar:tests", ("crds/v1beta2/*.yaml",)),
    GoModuleFiles(
        "cloudnative-pg",
        "github.com/cloudnative-pg/cloudnative-pg",
        "v1.28.0",
        ("config/crd/bases/*.yaml",),
    ),
    GoModuleFiles("keda", "github.com/kedacore/keda/v2", "v2.21.0", ("config/crd/bases/*.yaml",)),
    GoModuleFiles(
        "gateway-api", "sigs.k8s.io/gateway-api", "v1.6.3", ("config/crd/standard/*.yaml",)
    ),
    GoModuleFiles(
        "mongodb-community",
        "github.com/mongodb/mongodb-kubernetes-operator",
        "v0.13.0",
        ("config/crd/bases/*.yaml",),
    ),
    # Only the two kinds the manifests use (base/monitoring.yaml): the others weigh 4 MB, more
    # than every other source here, and each run parses what is fetched. The Go module proxy
    # serves no v0.95 of this module.
    GoModuleFiles(
        "prometheus-operator",
        "github.com/prometheus-operator/prometheus-operator",
        "v0.94.1",
        (
            "example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml",
            "example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml",
        ),
    ),
)
COMPOSE_SPEC = GoModuleFiles(
    "compose-spec",
    "github.com/compose-spec/compose-go/v2",
    "v2.16.2",
    ("schema/compose-spec.json",),
)


def cache_root() -> Path:
    """Where fetched tools and schemas live (outside the repository)."""
    if explicit := os.environ.get("CATALOG_CQRS_CACHE"):
        base = Path(explicit)
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "catalog-cqrs"
    return base / "deploy-tests"


@dataclass(frozen=True)
class Toolchain:
    """Paths of everything fetched: the kustomize binary and one directory per schema source."""

    kustomize: Path
    crd_dirs: Mapping[str, Path]
    compose_schema: Path


def ensure_toolchain(root: Path | None = None) -> Toolchain:
    """Fetch whatever is not cached yet (in parallel) and return where everything is."""
    root = root or cache_root()
    root.mkdir(parents=True, exist_ok=True)
    jobs: dict[str, Callable[[], Path]] = {
        KUSTOMIZE.key: lambda: _ensure_go_binary(root, KUSTOMIZE),
        COMPOSE_SPEC.key: lambda: _ensure_files(root, COMPOSE_SPEC),
    }
    for source in CRD_SOURCES:
        jobs[source.key] = partial(_ensure_files, root, source)
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        futures = {key: pool.submit(job) for key, job in jobs.items()}
        paths = {key: future.result() for key, future in futures.items()}
    return Toolchain(
        kustomize=paths[KUSTOMIZE.key],
        crd_dirs={source.key: paths[source.key] for source in CRD_SOURCES},
        compose_schema=paths[COMPOSE_SPEC.key] / "schema" / "compose-spec.json",
    )


def _ensure_go_binary(root: Path, binary: GoBinary) -> Path:
    target = root / "bin" / binary.key
    if target.is_file() and os.access(target, os.X_OK):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix=".build-") as staging:
        _run(
            [_go(), "install", f"{binary.package}@{binary.version}"],
            env={"GOBIN": staging},
            cwd=staging,
        )
        built = Path(staging) / binary.name
        if not built.is_file():
            raise Unobtainable(
                f"go install {binary.package}@{binary.version} built no {binary.name}"
            )
        os.replace(built, target)
    return target


def _ensure_files(root: Path, source: FileSource) -> Path:
    target = root / source.key
    if (target / ".complete").is_file():
        return target
    with tempfile.TemporaryDirectory(dir=root, prefix=f".{source.key}-") as staging:
        tree = Path(staging) / "tree"
        tree.mkdir()
        if isinstance(source, GoModuleFiles):
            copied = _copy_from_go_module(source, tree)
        else:
            copied = _extract_from_maven_jar(source, tree, Path(staging))
        if not copied:
            raise Unobtainable(f"{source.origin} holds no file matching {source.patterns}")
        (tree / ".complete").write_text(f"{source.origin}\n" + "".join(f"{p}\n" for p in copied))
        if target.exists():  # an older, interrupted layout; the marker was missing
            shutil.rmtree(target)
        try:
            os.replace(tree, target)
        except OSError:
            if not (target / ".complete").is_file():  # not a concurrent run winning the race
                raise
    return target


def _copy_from_go_module(source: GoModuleFiles, tree: Path) -> list[str]:
    with tempfile.TemporaryDirectory() as outside_any_module:
        result = _run(
            [_go(), "mod", "download", "-json", f"{source.module}@{source.version}"],
            cwd=outside_any_module,
        )
    info = json.loads(result)
    if info.get("Error") or not info.get("Dir"):
        raise Unobtainable(f"{source.origin}: {info.get('Error', 'no Dir in go mod download')}")
    module_dir = Path(info["Dir"])
    copied = []
    for path in sorted(module_dir.rglob("*")):
        relative = path.relative_to(module_dir).as_posix()
        if path.is_file() and any(fnmatch(relative, pattern) for pattern in source.patterns):
            (tree / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, tree / relative)
            copied.append(relative)
    return copied


def _extract_from_maven_jar(source: MavenJarFiles, tree: Path, staging: Path) -> list[str]:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise Unobtainable(
            f"{source.origin} needs Maven (`apt-get install maven`, as `make up` does)"
        )
    jars = staging / "jars"
    _run(
        [
            mvn,
            "--batch-mode",
            "--quiet",
            f"{MAVEN_DEPENDENCY_PLUGIN}:copy",
            f"-Dartifact={source.artifact}",
            f"-DoutputDirectory={jars}",
            "-Dtransitive=false",
        ],
        cwd=staging,
    )
    found = sorted(jars.glob("*.jar"))
    if len(found) != 1:
        raise Unobtainable(f"{source.origin}: expected one jar, got {found}")
    copied = []
    with zipfile.ZipFile(found[0]) as jar:
        for name in sorted(jar.namelist()):
            if not name.endswith("/") and any(fnmatch(name, p) for p in source.patterns):
                (tree / name).parent.mkdir(parents=True, exist_ok=True)
                (tree / name).write_bytes(jar.read(name))
                copied.append(name)
    return copied


def _go() -> str:
    found = shutil.which("go") or (
        "/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").is_file() else None
    )
    if found is None:
        raise Unobtainable("the deploy tests need Go to fetch kustomize and the operators' CRDs")
    return found


def _run(argv: list[str], *, cwd: str | Path, env: Mapping[str, str] | None = None) -> str:
    try:
        done = subprocess.run(
            argv,
            cwd=cwd,
            env={**os.environ, "GOFLAGS": "-mod=mod", **(env or {})},
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise Unobtainable(f"{' '.join(argv)}: {error}") from error
    if done.returncode != 0:
        output = f"{done.stdout[-2000:]}{done.stderr[-4000:]}"
        raise Unobtainable(f"{' '.join(argv)} exited {done.returncode}:\n{output}")
    return done.stdout
