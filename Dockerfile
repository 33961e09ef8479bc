FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY setup.cfg pyproject.toml README.md celeryconfig.py ./
COPY pipeline ./pipeline
COPY tasks ./tasks
COPY schemas ./schemas
RUN pip install --no-cache-dir . && useradd --system --uid 10001 app
USER app
EXPOSE 8000
CMD ["gunicorn", "--bind", "0.0.0.0:8000", "--workers", "4", "--worker-class", "gthread", "--threads", "16", "--logger-class", "pipeline.web.logs.RedactingGunicornLogger", "pipeline.web:create_app()"]
