# syntax=docker/dockerfile:1
#
# mysqlpool-proxy container image.
#
# Two stages: `builder` (with compilers) turns the project and all its
# dependencies into wheels; the final stage installs only those wheels, so it
# carries no compiler, no pip cache and no source tree, and runs as an
# unprivileged user (uid 10001).
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
# variables win over the file, including the two listen defaults set below.

FROM python:3.11-slim AS builder

RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY pyproject.toml README.md ./
COPY mysqlpool_proxy ./mysqlpool_proxy
# The project's wheel and a wheel of every runtime dependency (built from source
# only where no binary wheel exists for this platform).
RUN pip wheel --no-cache-dir --wheel-dir /wheels .


FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Install from the builder's wheels only (never from an index); the wheels are
# bind-mounted, so they do not stay in a layer.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels mysqlpool-proxy

RUN groupadd --system --gid 10001 mysqlpool \
    && useradd --system --uid 10001 --gid mysqlpool --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin mysqlpool

# /etc/mysqlpool/config.toml: a placeholder so that the default CMD also runs
# from environment variables alone (an explicit --config must name a file that
# exists). Mount your own file over it. config.example.toml lists every key.
COPY config.example.toml /etc/mysqlpool/config.example.toml
RUN printf '%s\n' \
      '# Placeholder: mount your config here. Empty = defaults + MYSQLPOOL_* environment variables.' \
      '# Every key and its default: /etc/mysqlpool/config.example.toml' \
      > /etc/mysqlpool/config.toml \
    && chmod 0644 /etc/mysqlpool/config.toml /etc/mysqlpool/config.example.toml

# Container networking: clients and Prometheus (and the HEALTHCHECK) reach the
# proxy from outside the container's loopback. The admin console keeps its
# default, 127.0.0.1:6034 (and stays off until an admin password is set).
ENV MYSQLPOOL_PROXY_LISTEN=0.0.0.0:6033 \
    MYSQLPOOL_METRICS_LISTEN=0.0.0.0:9106

# 6033: MySQL clients; 6034: admin console (loopback unless MYSQLPOOL_ADMIN_LISTEN
# says otherwise); 9106: /metrics, /healthz, /readyz.
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
