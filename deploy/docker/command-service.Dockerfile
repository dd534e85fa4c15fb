# command-service image, built from the repository root (the uv workspace):
#   docker build -f deploy/docker/command-service.Dockerfile -t catalog-cqrs/command-service:0.1.0 .
# Commands: serve (HTTP API, the default), relay (outbox relay), migrate (a Job),
# ensure-topics (compose only; on Kubernetes Strimzi's KafkaTopic creates the topics).
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
    uv sync --frozen --no-dev --package command-service --no-install-workspace
# Then the sources of this package and the members it depends on, installed as wheels
# (--no-editable) so the runtime stage needs the virtualenv only.
COPY shared-contracts/src shared-contracts/src
COPY service-runtime/src service-runtime/src
COPY command-service/src command-service/src
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --package command-service --no-editable

# --- runtime: the interpreter and the virtualenv, nothing to build with --------------------------
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="catalog-cqrs command-service" \
      org.opencontainers.image.description="Write side of Catalog CQRS: the command API, the outbox relay and migrations" \
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
    COMMAND_HOST=0.0.0.0
WORKDIR /app
USER 10001:10001
EXPOSE 18001
# Checks `serve`; the relay (same image) answers on COMMAND_RELAY_METRICS_PORT instead, so
# compose overrides the check for it.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('COMMAND_PORT', '18001'), timeout=2)"
ENTRYPOINT ["command-service"]
CMD ["serve"]
