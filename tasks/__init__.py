"""The Celery app: `celery -A tasks worker -Q render,rokt,sfmc,callbacks`."""

from celery import Celery

app = Celery(
    "rokt_sfmc", include=["tasks.execution", "tasks.flushing", "tasks.webhooks", "tasks.maintenance"]
)
app.config_from_object("celeryconfig")
