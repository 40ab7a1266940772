# syntax=docker/dockerfile:1
# alert-receiver container image.
#
#   docker build -t alert-receiver:0.1.0 .
#   docker run -p 9095:9095 -v alert-receiver-data:/data -e RECEIVER_WEBHOOK_TOKEN=... alert-receiver:0.1.0
#
# Two stages: the builder turns the project and all its dependencies into wheels; the runtime stage
# installs those wheels offline (--no-index) and keeps neither pip's cache, the wheels nor any build
# tool. Both stages use the same base image, so the wheels match the runtime's Python ABI.

FROM python:3.11-slim AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Only what the wheel is built from (.dockerignore keeps the rest of the context out as well).
# pyproject.toml installs templates/ as the package data receiver/templates.
COPY pyproject.toml README.md ./
COPY receiver/ receiver/
COPY templates/ templates/
# All dependencies have manylinux wheels for CPython 3.11, so no compiler is needed here; should one
# ever need compiling, install build-essential in THIS stage only.
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    RECEIVER_DATABASE_URL=sqlite+aiosqlite:////data/alert-receiver.db
# A fixed numeric uid/gid, so Kubernetes' runAsNonRoot can verify it and deploy/kubernetes can use the
# same ids for runAsUser/fsGroup. /data holds the SQLite database and must be writable by that user.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin app \
    && mkdir /data \
    && chown app:app /data
# The wheels are bind-mounted from the builder for this one command, so they never become a layer.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels /wheels/alert_receiver-*.whl
VOLUME ["/data"]
WORKDIR /data
USER 10001:10001
EXPOSE 9095
# Liveness only (/healthz); readiness (/readyz, database reachable) is for the orchestrator to decide.
# Uses the port of the default CMD: change both together.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9095/healthz', timeout=4)"]
CMD ["alert-receiver", "serve", "--host", "0.0.0.0", "--port", "9095"]
