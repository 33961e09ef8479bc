"""The pipeline benchmark's baseline: a Celery task that does nothing, over the same Redis
with the same Celery settings (celeryconfig), so its CPU is Celery's own cost per task."""

from celery import Celery

NOOP_QUEUE = "bench-noop"
NOOP_TASK = "bench.noop"

app = Celery("bench_noop", set_as_current=False)
app.config_from_object("celeryconfig")
app.conf.task_routes = {NOOP_TASK: {"queue": NOOP_QUEUE}}


@app.task(name=NOOP_TASK)
def noop() -> None:
    """Nothing: what is left is receiving, acknowledging and logging a task."""
