"""The Dockerfiles: multi-stage, dependencies before sources, non-root, nothing to build with."""

from __future__ import annotations

import re
import tomllib

import pytest

from tests.deploy.dockerfiles import DOCKER_DIR, SERVICE_IMAGES, Dockerfile, parse
from tests.deploy.manifests import REPO, image_tag


@pytest.fixture(params=SERVICE_IMAGES)
def dockerfile(request: pytest.FixtureRequest) -> Dockerfile:
    name: str = request.param
    path = DOCKER_DIR / f"{name}.Dockerfile"
    assert path.is_file(), f"no Dockerfile for {name}"
    return parse(path)


def _member(dockerfile: Dockerfile) -> str:
    return dockerfile.path.name.removesuffix(".Dockerfile")


def test_one_dockerfile_per_service() -> None:
    found = sorted(p.name.removesuffix(".Dockerfile") for p in DOCKER_DIR.glob("*.Dockerfile"))
    assert found == sorted(SERVICE_IMAGES)
    workspace = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["uv"]["workspace"]
    assert set(SERVICE_IMAGES) <= set(workspace["members"])


def test_base_images_are_pinned_python_slim(dockerfile: Dockerfile) -> None:
    assert len(dockerfile.stages) >= 2, "multi-stage: build, then runtime"
    for stage in dockerfile.stages:
        if stage.base in {s.name for s in dockerfile.stages}:
            continue
        tag = image_tag(stage.base)
        assert stage.base.startswith("python:3.11"), stage.base
        assert tag not in (None, "latest"), stage.base
        assert "slim" in str(tag), stage.base


def test_dependencies_are_installed_before_the_sources_are_copied(dockerfile: Dockerfile) -> None:
    member = _member(dockerfile)
    build = dockerfile.stages[0]
    steps = [(i.keyword, i.arguments) for i in build.instructions]
    syncs = [n for n, (kw, arg) in enumerate(steps) if kw == "RUN" and "uv sync" in arg]
    sources = [n for n, (kw, arg) in enumerate(steps) if kw == "COPY" and "/src " in f"{arg} "]
    assert len(syncs) == 2, steps
    assert sources, steps
    first, second = steps[syncs[0]][1], steps[syncs[1]][1]
    for flag in ("--frozen", "--no-dev", f"--package {member}"):
        assert flag in first, (flag, first)
        assert flag in second, (flag, second)
    assert "--no-install-workspace" in first
    assert syncs[0] < min(sources), "dependencies first"
    assert max(sources) < syncs[1], "then the workspace packages"
    copied_before = " ".join(arg for kw, arg in steps[: syncs[0]] if kw == "COPY")
    assert "uv.lock" in copied_before
    assert "/src" not in copied_before


def test_every_workspace_member_is_declared_before_the_first_sync(dockerfile: Dockerfile) -> None:
    """uv reads the whole workspace, so each member's pyproject.toml must be in the image."""
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    members = pyproject["tool"]["uv"]["workspace"]["members"]
    steps = dockerfile.stages[0].instructions
    first_sync = next(
        n for n, i in enumerate(steps) if i.keyword == "RUN" and "uv sync" in i.arguments
    )
    copied = {
        source
        for step in steps[:first_sync]
        if step.keyword == "COPY"
        for source in step.arguments.split()[:-1]
    }
    assert {"pyproject.toml", "uv.lock"} <= copied
    missing = {f"{member}/pyproject.toml" for member in members} - copied
    assert not missing, f"{dockerfile.path.name} does not copy {missing}"


def test_uv_is_the_version_the_repository_pins(dockerfile: Dockerfile) -> None:
    ensure_uv = (REPO / "deploy" / "local" / "ensure-uv").read_text()
    pinned = re.search(r'UV_VERSION="([^"]+)"', ensure_uv)
    assert pinned
    installs = " ".join(dockerfile.stages[0].all("RUN"))
    assert f"uv=={pinned[1]}" in installs


def test_the_runtime_stage_is_non_root_and_has_no_build_tools(dockerfile: Dockerfile) -> None:
    final = dockerfile.final
    (user,) = final.all("USER")
    assert user.split(":")[0] not in ("0", "root"), user
    runs = " ".join(final.all("RUN"))
    for tool in ("pip install", "apt-get install", "apk add", "gcc", "build-essential", "uv "):
        assert tool not in runs, f"{tool!r} in the runtime stage"
    assert "pip uninstall" in runs, "the installers of the base image are removed"
    copies = final.all("COPY")
    assert copies
    assert all(c.startswith("--from=") for c in copies), "only build output"


def test_the_runtime_stage_has_a_healthcheck_and_an_entrypoint(dockerfile: Dockerfile) -> None:
    member = _member(dockerfile)
    final = dockerfile.final
    (healthcheck,) = final.all("HEALTHCHECK")
    assert "CMD" in healthcheck
    assert "127.0.0.1" in healthcheck
    assert final.all("ENTRYPOINT") == [f'["{member}"]']
    assert final.all("CMD"), "a default command"
    script = member.removesuffix("-service").upper()
    envs = " ".join(final.all("ENV"))
    assert f"{script}_HOST=0.0.0.0" in envs, "listen on the container's interface"


def test_the_build_context_is_only_what_the_images_copy() -> None:
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*", "an allowlist: everything is excluded first"
    included = {p.lstrip("!").rstrip("/") for p in patterns if p.startswith("!")}
    for dockerfile in map(parse, DOCKER_DIR.glob("*.Dockerfile")):
        for copy in dockerfile.stages[0].all("COPY"):
            *sources, _ = copy.split()
            for source in sources:
                assert source.rstrip("/") in included, f"{dockerfile.path.name}: {source}"
    for leaked in (".venv", ".run", ".git", "tests"):
        assert leaked not in included
