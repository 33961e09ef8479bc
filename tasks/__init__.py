"""The Celery app. `celery -A tasks worker` without `-Q` consumes every shared queue of
celeryconfig, and the `TenantQueues` bootstep adds each active tenant's `render.<t>`/`rokt.<t>`
(tenants added later included). A `-Q` list must name the shared queues it serves (`render`,
`rokt`, `sfmc`, `callbacks`, `webhooks`); tenant queues follow the stages it serves."""

from celery import Celery

from pipeline.infra import kombu_redis_close

kombu_redis_close.apply()  # kombu's Redis channel survives a Redis restart with remote control on (see there)

app = Celery(
    "rokt_sfmc",
    include=[
        "tasks.execution",
        "tasks.flushing",
        "tasks.webhooks",
        "tasks.maintenance",
        "tasks.provisioning",
        "tasks.event_jobs",
        "tasks.performance",
    ],
)
app.config_from_object("celeryconfig")

from tasks.heartbeat import Heartbeat  # noqa: E402  (needs the configured app's settings)
from tasks.intake_pump import IntakePump  # noqa: E402
from tasks.tenant_queues import TenantQueues  # noqa: E402

app.steps["consumer"].add(TenantQueues)
app.steps["consumer"].add(Heartbeat)
app.steps["worker"].add(IntakePump)  # accepted executions from Redis into the broker
