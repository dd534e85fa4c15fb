# projector image, built from the repository root (the uv workspace):
#   docker build -f deploy/docker/projector.Dockerfile -t catalog-cqrs/projector:0.1.0 .
# Commands: run (the consumer group, the default), rebuild (replay into a new generation).
ARG PYTHON_IMAGE=python:3.11.14-slim-trixie

# --- build: resolve the locked dependencies first, then the workspace packages -------------------
FROM ${PYTHON_IMAGE} AS build
# uv from PyPI at the version the repository pins (deploy/local/ensure-uv); only in this stage.
RUN pip install --no-cache-dir --disable-pip-version-check uv==0.13.9
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /src
# Dependencies change less often than sources: this layer survives source edits. Every member's
# pyproject.toml is needed for uv to read the workspace, not only this package's.
COPY pyproject.toml uv.lock ./
COPY shared-contracts/pyproject.toml shared-contracts/
COPY service-runtime/pyproject.toml service-runtime/
COPY read-models/pyproject.toml read-models/
COPY command-service/pyproject.toml command-service/
COPY projector/pyproject.toml projector/
COPY query-service/pyproject.toml query-service/
COPY catalogctl/pyproject.toml catalogctl/
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --package projector --no-install-workspace
# Then the sources of this package and the members it depends on, installed as wheels
# (--no-editable) so the runtime stage needs the virtualenv only.
COPY shared-contracts/src shared-contracts/src
COPY service-runtime/src service-runtime/src
COPY read-models/src read-models/src
COPY projector/src projector/src
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --package projector --no-editable

# --- runtime: the interpreter and the virtualenv, nothing to build with --------------------------
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="catalog-cqrs projector" \
      org.opencontainers.image.description="Read side of Catalog CQRS: projects product events from Kafka into MongoDB" \
      org.opencontainers.image.version="0.1.0"
# No installers or build backends in the final image; a fixed non-root uid the manifests name.
RUN python -m pip uninstall --yes --quiet pip setuptools wheel \
    && groupadd --system --gid 10001 catalog \
    && useradd --system --uid 10001 --gid catalog --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin catalog
COPY --from=build /app/.venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PROJECTOR_HOST=0.0.0.0
WORKDIR /app
USER 10001:10001
EXPOSE 18012
# The projector serves /metrics only (no HTTP API).
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/metrics' % os.environ.get('PROJECTOR_METRICS_PORT', '18012'), timeout=2)"
ENTRYPOINT ["projector"]
CMD ["run"]
