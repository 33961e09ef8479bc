"""The Celery app. `celery -A tasks worker` without `-Q` consumes every queue of celeryconfig
(`webhooks` and each tenant's `render.<t>`/`rokt.<t>` included); a `-Q` list must name them all."""

from celery import Celery

app = Celery(
    "rokt_sfmc", include=["tasks.execution", "tasks.flushing", "tasks.webhooks", "tasks.maintenance"]
)
app.config_from_object("celeryconfig")
