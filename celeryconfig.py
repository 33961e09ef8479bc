"""Celery settings only (reference: docs/vendors/celery-redis.md §11).

Every process that connects (web producer, workers, beat, Flower, CLI) reads this module, so
the broker transport options are identical everywhere: a consumer with a shorter visibility
timeout would re-deliver other workers' messages, and a queue declared with other arguments is
refused by RabbitMQ.

The broker is BROKER_URL, or REDIS_URL without it (`make demo`, the tests); production runs
RabbitMQ (README "Broker": a lost worker's messages run elsewhere at once, not after the
visibility timeout). RedBeat's schedule stays on REDIS_URL either way.
"""

from celery.schedules import crontab

from pipeline.infra import broker, keys
from pipeline.infra.queues import (
    CALLBACKS_QUEUE,
    CREATE_EVENT_TASK,
    EVENT_JOB_ITEM_TASK,
    EVENT_JOB_STEP_TASK,
    EVENT_JOBS_QUEUE,
    EXPORT_PERFORMANCE_ALL_TASK,
    EXPORT_PERFORMANCE_TASK,
    FLUSH_ALL_TASK,
    FLUSH_HISTORY_TASK,
    FLUSH_RELEASES_TASK,
    FLUSH_STATUS_TASK,
    FLUSH_SUBSCRIPTION_HISTORY_TASK,
    FLUSH_SUBSCRIPTIONS_TASK,
    INSTALL_DATA_EXTENSIONS_TASK,
    JOURNEY_STOPPED_TASK,
    RECONCILE_TASK,
    RENDER_QUEUE,
    RENDER_TASK,
    ROKT_QUEUE,
    SFMC_QUEUE,
    WEBHOOK_TASK,
    WEBHOOKS_QUEUE,
    worker_queues,
)
from pipeline.infra.redis_clients import celery_redis_options, tls_options
from pipeline.settings import get_settings, is_amqp

_redis_url = get_settings().redis_url
# A Sentinel REDIS_URL (`redis+sentinel://...`, pipeline/infra/redis_clients.py) in kombu's and RedBeat's own
# forms; a plain redis:// or rediss:// URL as it is.
_redis = celery_redis_options(_redis_url)
_broker = get_settings().broker  # BROKER_URL, or REDIS_URL without it
BROKER_IS_AMQP = is_amqp(_broker)
# Visibility timeout (Redis broker only): longer than the hard time limit (120 s) plus the
# longest countdown we schedule (retry backoff capped at 300 s) plus margin, or a waiting retry
# is re-delivered and runs twice. It is also how long a killed worker's messages wait.
VISIBILITY_TIMEOUT = 900

if BROKER_IS_AMQP:
    # RabbitMQ: a message a worker holds unacknowledged goes back to its queue the moment the
    # worker's connection closes (a killed process: at once; a lost machine: at the heartbeat
    # timeout, 60 s as RabbitMQ negotiates it); no visibility timeout. `amqps://` is TLS.
    broker_url = _broker
    broker_use_ssl = None
    broker_transport_options = {
        "confirm_publish": True,  # publisher confirms: send_task returns once RabbitMQ has it
        "connect_timeout": 5,
    }
    # Every queue a quorum queue with a topic exchange of its name (pipeline/infra/broker.py); the
    # per-tenant queues the producer's router makes on first use are declared the same way.
    task_create_missing_queue_type = "quorum"
    task_create_missing_queue_exchange_type = "topic"
    # Countdown/ETA retries wait in RabbitMQ's delayed-delivery queues (Celery's native delayed
    # delivery, which each worker sets up at start), not in a worker's memory.
    broker_native_delayed_delivery_queue_type = "quorum"
    # Quorum queues refuse global QoS: Celery sees them and uses per-consumer prefetch.
    worker_detect_quorum_queues = True
else:
    _broker_redis = _redis if _broker == _redis_url else celery_redis_options(_broker)
    broker_url = _broker_redis["broker_url"]
    # Redis over TLS (`rediss://`): the URL's own `ssl_*` options (CA, client certificate), the
    # server's certificate verified by default, for the broker here, for RedBeat below and for
    # Flower's broker tab, which take them only from this setting; None for `redis://`.
    # pipeline/infra/redis_clients.py says what REDIS_URL may carry.
    broker_use_ssl = tls_options(_broker)
    broker_transport_options = {
        "visibility_timeout": VISIBILITY_TIMEOUT,
        "socket_timeout": 30,
        "socket_connect_timeout": 5,
        "socket_keepalive": True,
        "health_check_interval": 25,
        "retry_on_timeout": True,
        "max_connections": 50,
        "unacked_restore_interval": 10,
        "unacked_restore_throttle": 3,
        **_broker_redis["transport_options"],  # Sentinel: master_name (kombu asks the Sentinels for it)
    }
    visibility_timeout = VISIBILITY_TIMEOUT
broker_connection_retry_on_startup = True
task_publish_retry_policy = {"max_retries": 5, "interval_start": 0, "interval_step": 0.5, "interval_max": 2}

task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]

# At-least-once execution; every effect is idempotent through the ledger and eventId.
task_acks_late = True
task_reject_on_worker_lost = True
task_retry_on_worker_lost = True
worker_prefetch_multiplier = 1
worker_eta_task_limit = 1000
task_time_limit = 120
task_soft_time_limit = 100
worker_cancel_long_running_tasks_on_connection_loss = False
worker_soft_shutdown_timeout = 30.0
worker_enable_soft_shutdown_on_idle = True
worker_max_tasks_per_child = 10000
worker_max_memory_per_child = 300_000  # KiB

# The ledger is the record; no result storage (each stored result costs the producer).
task_ignore_result = True
result_backend = None

# A worker started without -Q consumes all of these; its TenantQueues bootstep
# (tasks/tenant_queues.py) adds each active tenant's render.<t> and rokt.<t> within 5 s, tenants
# added at run time included (taken in turn: fairness between tenants); nothing restarts.
# Adding a tenant and the -Q rules: docs/operations.md#adding-a-tenant, #scaling-workers.
task_queues = tuple(broker.queue(name, BROKER_IS_AMQP) for name in worker_queues(get_settings().tenants))
task_default_queue = RENDER_QUEUE
task_routes = {
    RENDER_TASK: {"queue": RENDER_QUEUE},  # sent to render_queue(tenant); this is the fallback
    CREATE_EVENT_TASK: {"queue": ROKT_QUEUE},  # sent to rokt_queue(tenant)
    FLUSH_STATUS_TASK: {"queue": SFMC_QUEUE},
    FLUSH_SUBSCRIPTIONS_TASK: {"queue": SFMC_QUEUE},
    WEBHOOK_TASK: {"queue": WEBHOOKS_QUEUE},
    RECONCILE_TASK: {"queue": CALLBACKS_QUEUE},
    FLUSH_ALL_TASK: {"queue": SFMC_QUEUE},
    FLUSH_HISTORY_TASK: {"queue": SFMC_QUEUE},
    FLUSH_SUBSCRIPTION_HISTORY_TASK: {"queue": SFMC_QUEUE},
    FLUSH_RELEASES_TASK: {"queue": CALLBACKS_QUEUE},
    INSTALL_DATA_EXTENSIONS_TASK: {"queue": SFMC_QUEUE},
    EVENT_JOB_STEP_TASK: {"queue": EVENT_JOBS_QUEUE},
    EVENT_JOB_ITEM_TASK: {"queue": EVENT_JOBS_QUEUE},
    JOURNEY_STOPPED_TASK: {"queue": EVENT_JOBS_QUEUE},
    EXPORT_PERFORMANCE_ALL_TASK: {"queue": SFMC_QUEUE},
    EXPORT_PERFORMANCE_TASK: {"queue": SFMC_QUEUE},
}

# Remote control (pidbox) on: `celery inspect`/`control`, Flower's Workers page, revoke, pool and
# consumer controls, and each worker's active queues (tenant queues added at run time included).
# It used to be off: after a Redis restart a worker whose pidbox pub/sub socket saw the lost
# connection before its BRPOP one died with "Unrecoverable error" (AttributeError in kombu's
# Channel.close re-entered after a failed read of the pending BRPOP, a path added by
# celery/kombu#1733) or hung in its shutdown. pipeline/infra/kombu_redis_close.py (applied by the
# Celery app in
# tasks/__init__.py, which workers, beat and Flower load, and by the producer) lets that
# close complete; tests/integration/test_flower.py and `demo --chaos restart-redis` check that
# every worker answers `inspect ping` within 30 s of a Redis restart. The transport options
# above bound every other wait (socket_timeout; health_check_interval pings the pub/sub socket).
worker_enable_remote_control = True
worker_send_task_events = True
task_send_sent_event = False  # one extra publish per task on the execute hot path
worker_hijack_root_logger = False

beat_scheduler = "tasks.beat:HeartbeatScheduler"  # RedBeat, writing beat's heartbeat each tick
redbeat_redis_url = _redis["redbeat_url"]
if _redis["redbeat_options"]:  # Sentinel: the Sentinels and the master's name
    redbeat_redis_options = _redis["redbeat_options"]
redbeat_redis_use_ssl = tls_options(_redis_url)
redbeat_key_prefix = keys.redbeat_prefix()
redbeat_lock_timeout = 60
beat_max_loop_interval = 10
# past the hour: every zone's midnight (whole, half and quarter hours from UTC) lies before a run
# of the same hour or of the next one, and the counting scripts are done with the day by then
PERFORMANCE_ROWS_MINUTE = 7
beat_schedule = {
    # Safety net behind the per-row flush scheduling: picks up rows orphaned by a lost worker.
    "flush-outboxes": {"task": FLUSH_ALL_TASK, "schedule": 10.0, "options": {"expires": 9}},
    # Stuck executions re-driven, unconfirmed ones checked at Rokt, dead letters retried once.
    "reconcile": {"task": RECONCILE_TASK, "schedule": 30.0, "options": {"expires": 25}},
    # The performance data extension: each tenant's today every hour, and the days that ended
    # (in its own time zone) since the last run (pipeline/delivery/performance_rows.py).
    "performance-rows": {
        "task": EXPORT_PERFORMANCE_ALL_TASK,
        "schedule": crontab(minute=PERFORMANCE_ROWS_MINUTE),
        "options": {"expires": 3000},
    },
}
