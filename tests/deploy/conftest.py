"""Session fixtures of the deploy tests: the fetched toolchain, schemas and rendered overlays."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.deploy.manifests import OVERLAYS, Rendered, render
from tests.deploy.schemas import SchemaCatalog
from tests.deploy.toolchain import KUBERNETES_VERSION, Toolchain, Unobtainable, ensure_toolchain

# The first run builds kustomize and downloads the CRDs (about two and a half minutes on a cold
# machine) and builds promtool with the Prometheus server (about ten), inside the setup of
# whichever test comes first: give these tests more than the suite's default timeout.
FIRST_RUN_TIMEOUT_SECONDS = 1800


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if item.path.is_relative_to(here):
            item.add_marker(pytest.mark.timeout(FIRST_RUN_TIMEOUT_SECONDS))


@pytest.fixture(scope="session")
def toolchain() -> Toolchain:
    """kustomize, the operators' CRDs and the compose schema; a missing one fails, never skips."""
    started = time.monotonic()
    try:
        found = ensure_toolchain()
    except Unobtainable as error:
        pytest.fail(f"deploy tests need their pinned tools and schemas: {error}", pytrace=False)
    elapsed = time.monotonic() - started
    if elapsed > 5:
        print(f"\ndeploy tests: fetched the toolchain in {elapsed:.1f}s (cached from now on)")
    return found


@pytest.fixture(scope="session")
def schema_catalog(toolchain: Toolchain) -> SchemaCatalog:
    return SchemaCatalog(toolchain.crd_dirs.values(), KUBERNETES_VERSION)


@pytest.fixture(scope="session")
def rendered_overlays(toolchain: Toolchain) -> dict[str, Rendered]:
    return {overlay: render(toolchain.kustomize, overlay) for overlay in OVERLAYS}


@pytest.fixture(params=OVERLAYS)
def rendered(request: pytest.FixtureRequest, rendered_overlays: dict[str, Rendered]) -> Rendered:
    """One overlay's objects (tests using it run once per overlay)."""
    overlay: str = request.param
    return rendered_overlays[overlay]
