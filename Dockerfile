# syntax=docker/dockerfile:1
#
# mysqlpool-proxy container image.
#
# Two stages: `builder` (with compilers) turns the project and all its
# dependencies into wheels; the final stage installs only those wheels, so it
# carries no compiler, no pip cache and no source tree, and runs as an
# unprivileged user (uid 10001).
#
# Layers, in the order a source change reaches them: the dependencies' wheels
# are built from pyproject.toml alone and installed in a layer of their own,
# so a change to the code reuses both from the cache; the project's own wheel
# is built from the copied source and installed last. What COPY brings in is
# part of the cache key (and a bind mount's content part of its RUN's), so a
# changed file rebuilds the project's wheel and its install, never a stale copy.
#
#   docker build -t mysqlpool-proxy .
#   docker run --rm -p 6033:6033 -p 9106:9106 \
#     -e MYSQLPOOL_BACKEND_HOST=db.example.com \
#     -e MYSQLPOOL_USERS_0_NAME=app -e MYSQLPOOL_USERS_0_PASSWORD=secret \
#     mysqlpool-proxy
#
# Configuration: mount a TOML file at /etc/mysqlpool/config.toml, or set only
# MYSQLPOOL_* environment variables (the image ships a comment-only file at
# that path, so the default command works without a mount). Environment
# variables win over the file, including the two listen defaults set below;
# the proxy logs at start which settings came from the environment.

# Both stages start from the same base, pinned by digest: python:3.11-slim-bookworm,
# the multi-platform index digest that docker-library/repo-info lists for that
# tag (repos/python/remote/3.11-slim-bookworm.md: Python 3.11.16, built
# 2026-08-25). It was not pulled or verified where this file was written: check
# it with `docker buildx imagetools inspect python:3.11-slim-bookworm`, and move
# the two FROM lines and the base.digest label together.
FROM python:3.11-slim-bookworm@sha256:0bee7276f83efd4a1ee05bbbf4281d95ed28e079220a9457f25a93e3f1e3c31b AS builder

# Compilers: for the project's own compiled hot path (setup.py, mypyc) and for a
# dependency without a binary wheel for this platform.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src

# 1. The dependencies' wheels, from the [project] dependencies of pyproject.toml
#    alone: this layer is rebuilt only when pyproject.toml changes.
COPY pyproject.toml ./
RUN python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' \
        > /tmp/requirements.txt \
    && pip wheel --no-cache-dir --wheel-dir /wheels/deps --requirement /tmp/requirements.txt

# 2. The project's own wheel, from the source, its hot path compiled (setup.py;
#    `mysqlpool-proxy -V` in the image says "compiled").
COPY setup.py README.md LICENSE ./
COPY mysqlpool_proxy ./mysqlpool_proxy
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels/app .


FROM python:3.11-slim-bookworm@sha256:0bee7276f83efd4a1ee05bbbf4281d95ed28e079220a9457f25a93e3f1e3c31b

ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="mysqlpool-proxy" \
      org.opencontainers.image.description="A MySQL/MariaDB connection-pooling proxy: transaction pooling, no more 'gone away', graceful overflow." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.vendor="The mysqlpool-proxy authors" \
      org.opencontainers.image.source="https://mysqlpool-proxy.example.org/" \
      org.opencontainers.image.documentation="https://mysqlpool-proxy.example.org/#readme" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11-slim-bookworm" \
      org.opencontainers.image.base.digest="sha256:0bee7276f83efd4a1ee05bbbf4281d95ed28e079220a9457f25a93e3f1e3c31b"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Install from the builder's wheels only (never from an index); the wheels are
# bind-mounted, so they do not stay in a layer. Dependencies first, in a layer
# that a code change leaves alone; then the project itself.
RUN --mount=type=bind,from=builder,source=/wheels/deps,target=/wheels/deps \
    pip install --no-index --find-links=/wheels/deps /wheels/deps/*.whl
RUN --mount=type=bind,from=builder,source=/wheels/app,target=/wheels/app \
    pip install --no-index --no-deps /wheels/app/*.whl

RUN groupadd --system --gid 10001 mysqlpool \
    && useradd --system --uid 10001 --gid mysqlpool --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin mysqlpool \
    && install -d -m 0755 /etc/mysqlpool

# /etc/mysqlpool/config.toml: a placeholder so that the default CMD also runs
# from environment variables alone (an explicit --config must name a file that
# exists). Mount your own file over it. config.example.toml (from the installed
# package: the same as `mysqlpool-proxy --print-example-config`) lists every key.
RUN printf '%s\n' \
      '# Placeholder: mount your config here. Empty = defaults + MYSQLPOOL_* environment variables.' \
      '# Every key and its default: /etc/mysqlpool/config.example.toml' \
      > /etc/mysqlpool/config.toml \
    && mysqlpool-proxy --print-example-config > /etc/mysqlpool/config.example.toml \
    && chmod 0644 /etc/mysqlpool/config.toml /etc/mysqlpool/config.example.toml

# Container networking: clients and Prometheus (and the HEALTHCHECK) reach the
# proxy from outside the container's loopback. The admin console keeps its
# default, 127.0.0.1:6034 (and stays off until an admin password is set).
ENV MYSQLPOOL_PROXY_LISTEN=0.0.0.0:6033 \
    MYSQLPOOL_METRICS_LISTEN=0.0.0.0:9106

# 6033: MySQL clients; 6034: admin console (loopback unless MYSQLPOOL_ADMIN_LISTEN
# says otherwise); 9106: /metrics, /healthz, /readyz, /status.
EXPOSE 6033 6034 9106

USER 10001:10001

# Liveness of the process; python's urllib, so the image needs no curl.
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9106/healthz', timeout=4)"]

# SIGTERM (docker stop, Kubernetes) drains: no new clients, running
# transactions get up to [proxy] shutdown_timeout (30 s) to finish. Give the
# container at least that long (docker stop -t 35, stop_grace_period,
# terminationGracePeriodSeconds).
STOPSIGNAL SIGTERM

ENTRYPOINT ["mysqlpool-proxy"]
CMD ["--config", "/etc/mysqlpool/config.toml"]
