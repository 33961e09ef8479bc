"""The rate-limit benchmark's baseline: our own tasks, but held to the limit by Celery's
`rate_limit` (a token bucket inside each worker instance) instead of our Redis limiter."""

import os

from pipeline.infra.queues import CREATE_EVENT_TASK
from tasks import app

app.conf.task_annotations = {
    CREATE_EVENT_TASK: {"rate_limit": os.environ.get("BENCH_CELERY_RATE_LIMIT", "100/s")}
}
