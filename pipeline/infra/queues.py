"""Queue and task names: stable strings shared by the dispatcher, the tasks and celeryconfig."""

from collections.abc import Iterable

from pipeline.vocabulary import OutboxKind

RENDER_QUEUE = "render"
ROKT_QUEUE = "rokt"
SFMC_QUEUE = "sfmc"
CALLBACKS_QUEUE = "callbacks"
WEBHOOKS_QUEUE = "webhooks"
ALL_QUEUES = (RENDER_QUEUE, ROKT_QUEUE, SFMC_QUEUE, CALLBACKS_QUEUE, WEBHOOKS_QUEUE)
# Rokt calls waiting for their limiter ticket (pipeline/stores/ratelimit.py), every tenant's: a queue of
# its own, so a task sent back to its ticket reaches a worker at once and waits there for its
# time, instead of behind the backlog of rokt.<tenant> it came from (and missing its slot).
# Not a tenant queue (no `rokt.` prefix); whatever serves `rokt` must serve it too.
ROKT_WAIT_QUEUE = "rokt-wait"
# Event jobs (corrections, cancels, withdrawals of sent events), every tenant's: a queue of their
# own, so a job does not wait behind a journey's backlog of creates (the limiter shares the rate).
EVENT_JOBS_QUEUE = "event-jobs"
# Every queue not of one tenant: what the exporter and `status` report beside the tenants' own.
SHARED_QUEUES = (*ALL_QUEUES, ROKT_WAIT_QUEUE, EVENT_JOBS_QUEUE)
# How the service splits its workers (compose, the demo): the Rokt stage waits on the network,
# so a threads pool (worker-rokt) runs it; everything else uses CPU and runs on prefork
# (worker-render). Each also takes its stage's per-tenant queues (tasks/tenant_queues.py).
ROKT_WORKER_QUEUES = (ROKT_QUEUE, ROKT_WAIT_QUEUE, EVENT_JOBS_QUEUE)
RENDER_WORKER_QUEUES = tuple(q for q in ALL_QUEUES if q not in ROKT_WORKER_QUEUES)


def render_queue(tenant: str) -> str:
    """Each tenant's executions wait in queues of their own: a worker takes from its queues in
    turn, so one tenant's 20,000-contact journey cannot hold another's 100 behind it."""
    return f"{RENDER_QUEUE}.{tenant}"


def rokt_queue(tenant: str) -> str:
    return f"{ROKT_QUEUE}.{tenant}"


def worker_queues(tenants: Iterable[str]) -> tuple[str, ...]:
    """Every queue a worker consumes: the shared ones (the bare `render` and `rokt` still drain
    what was queued before per-tenant queues), the Rokt waiting room and each configured
    tenant's own."""
    names = sorted(tenants)
    return (*SHARED_QUEUES, *(render_queue(t) for t in names), *(rokt_queue(t) for t in names))


# Every task message's header: when it was published (seconds since the epoch); the exporter
# reads it from the oldest waiting message of each queue.
SENT_AT_HEADER = "rsf_sent_at"

RENDER_TASK = "rsf.render_event"
CREATE_EVENT_TASK = "rsf.create_rokt_event"
FLUSH_STATUS_TASK = "rsf.flush_status_rows"
FLUSH_SUBSCRIPTIONS_TASK = "rsf.flush_subscription_rows"
WEBHOOK_TASK = "rsf.process_webhook"
RECONCILE_TASK = "rsf.reconcile"
FLUSH_RELEASES_TASK = "rsf.flush_releases"
FLUSH_ALL_TASK = "rsf.flush_all"
FLUSH_HISTORY_TASK = "rsf.flush_history"
FLUSH_SUBSCRIPTION_HISTORY_TASK = "rsf.flush_subscription_history"
INSTALL_DATA_EXTENSIONS_TASK = "rsf.install_data_extensions"
EVENT_JOB_STEP_TASK = "rsf.event_job_step"
EVENT_JOB_ITEM_TASK = "rsf.event_job_item"
JOURNEY_STOPPED_TASK = "rsf.journey_stopped"
EXPORT_PERFORMANCE_TASK = "rsf.export_performance"
EXPORT_PERFORMANCE_ALL_TASK = "rsf.export_performance_all"

# The task that drains each outbox.
FLUSH_TASKS: dict[OutboxKind, str] = {
    OutboxKind.STATUS_ROWS: FLUSH_STATUS_TASK,
    OutboxKind.SUBSCRIPTION_ROWS: FLUSH_SUBSCRIPTIONS_TASK,
    OutboxKind.RELEASES: FLUSH_RELEASES_TASK,
    OutboxKind.HISTORY: FLUSH_HISTORY_TASK,
    OutboxKind.SUBSCRIPTION_HISTORY: FLUSH_SUBSCRIPTION_HISTORY_TASK,
}
