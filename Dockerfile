# syntax=docker/dockerfile:1
# Production image: the same `crm-graphql serve` command the tests run, against an external
# PostgreSQL (CRM_DATABASE_URL or POSTGRES_*). Python pinned to the version CI tests with.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# --- build: a virtualenv with the pinned dependencies and the package -----------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first, so a code change does not reinstall them. Every pinned package ships a
# manylinux wheel, so no compiler is needed (--only-binary makes that a hard guarantee).
COPY requirements.lock ./
RUN pip install --only-binary=:all: -r requirements.lock
COPY pyproject.toml README.md alembic.ini ./
COPY crm_graphql ./crm_graphql
RUN pip install --no-deps . \
    && python -c "import crm_graphql.app, crm_graphql.migrations" \
    && python -c "from crm_graphql.web.ide import verify_assets; verify_assets()"

# --- runtime: the virtualenv only, as an unprivileged user -----------------------------------
FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    CRM_ENV=production \
    CRM_HOST=0.0.0.0 \
    CRM_PORT=8000
RUN groupadd --system --gid 10001 crm \
    && useradd --system --uid 10001 --gid crm --no-create-home --shell /usr/sbin/nologin crm
COPY --from=build /opt/venv /opt/venv
USER crm:crm
WORKDIR /tmp
EXPOSE 8000
# No curl in the slim image: Python itself asks /healthz.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('CRM_PORT', '8000')}/healthz\", timeout=2)"]
# `serve` applies the migrations first under a PostgreSQL advisory lock, so replicas that start
# together migrate once.
CMD ["crm-graphql", "serve"]
