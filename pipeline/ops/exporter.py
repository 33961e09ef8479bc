"""`rokt-sfmc exporter`: Prometheus metrics of the whole service, read from Redis at scrape time.

A custom collector turns `pipeline.ops.figures.snapshot` into metric families on each scrape, so
the figures are those every web and worker process keeps in Redis, never this process's own.
`/metrics` answers them (with `rsf_redis_up 0` and nothing else when Redis cannot be read),
`/healthz` answers 200 while Redis answers a PING. The exporter also writes its own heartbeat
(`pipeline.ops.heartbeats`, kind "exporter"). Names follow Prometheus' conventions; docs/operations.md
lists every metric (generated from `every_family`) and `deploy/prometheus/alerts.yml` alerts on them.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import redis
from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from pipeline.ops import figures, heartbeats
from pipeline.tenancy.handles import Runtime, get_runtime

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 10.0
WORKER_STALE_SECONDS = heartbeats.STALE_AFTER_SECONDS


def _gauge(name: str, doc: str, labels: Iterable[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=list(labels))


def metrics(snap: dict[str, Any]) -> Iterator[Metric]:
    """The metric families of one snapshot (a pure function: the tests feed it dicts)."""
    tenants: dict[str, dict[str, Any]] = snap.get("tenants", {})
    info = _gauge(
        "rsf_tenant_info", "A tenant of the registry (1), labelled with its status.", ["tenant", "status"]
    )
    waiting = _gauge("rsf_queue_messages_waiting", "Messages waiting in a Celery queue.", ["tenant", "queue"])
    unacked = _gauge(
        "rsf_queue_messages_unacked",
        "Messages a worker holds unacknowledged (running, or waiting for their ETA/countdown).",
        ["tenant", "queue"],
    )
    oldest = _gauge(
        "rsf_queue_oldest_message_age_seconds",
        "Age of the oldest waiting message of a queue (since first seen; 0 when empty).",
        ["tenant", "queue"],
    )
    for name, queues in [("", snap.get("sharedQueues", {}))] + [
        (t, series.get("queues", {})) for t, series in tenants.items()
    ]:
        for queue, q in queues.items():  # None: not available on this broker (pipeline/ops/figures.py)
            series = ((waiting, q["waiting"]), (unacked, q["unacked"]), (oldest, q["oldestAgeSeconds"]))
            for family, value in series:
                if value is not None:
                    family.add_metric([name, queue], value)
    outbox_waiting = _gauge(
        "rsf_outbox_rows_waiting", "Outbox rows not yet handed to a flush.", ["tenant", "kind"]
    )
    outbox_age = _gauge(
        "rsf_outbox_oldest_row_age_seconds", "Age of the oldest outbox row waiting.", ["tenant", "kind"]
    )
    dead = _gauge("rsf_dead_letters", "Items in the dead-letter store.", ["tenant", "stage", "error_class"])
    paused = _gauge(
        "rsf_limiter_paused", "1 while a vendor's 429 cool-down pauses the account.", ["tenant", "vendor"]
    )
    remaining = _gauge(
        "rsf_limiter_pause_remaining_seconds", "Seconds left of the 429 cool-down.", ["tenant", "vendor"]
    )
    deferred = CounterMetricFamily(
        "rsf_limiter_deferred_total",
        "Calls sent back to a later slot (a limiter ticket) instead of sleeping for it.",
        labels=["tenant", "vendor"],
    )
    late_wakes = CounterMetricFamily(
        "rsf_limiter_late_wakes_total",
        "Slots left unused by calls that woke too late for them (an overloaded worker host).",
        labels=["tenant", "vendor"],
    )
    executions = _gauge(
        "rsf_executions",
        "Executions by the state they are in now (all time; `queued`: not finished yet).",
        ["tenant", "state"],
    )
    received = CounterMetricFamily(
        "rsf_executions_received_total", "Journey Builder executes accepted (claimed).", labels=["tenant"]
    )
    replayed = CounterMetricFamily(
        "rsf_executions_replayed_total", "Failed executions re-queued by a replay.", labels=["tenant"]
    )
    webhooks = CounterMetricFamily(
        "rsf_webhooks_total",
        "Rokt webhooks received, by outcome (received, duplicate, released: claim undone, Rokt resends).",
        labels=["tenant", "outcome"],
    )
    webhook_types = CounterMetricFamily(
        "rsf_webhooks_by_type_total", "Rokt webhooks received, by eventType.", labels=["tenant", "type"]
    )
    calls = CounterMetricFamily(
        "rsf_vendor_calls_total",
        "HTTP requests to a vendor by status class (2xx: any answer below 400; error: no answer).",
        labels=["tenant", "vendor", "status_class"],
    )
    tokens = CounterMetricFamily(
        "rsf_vendor_token_fetches_total", "OAuth tokens fetched from a vendor.", labels=["tenant", "vendor"]
    )
    auth_failures = CounterMetricFamily(
        "rsf_auth_failures_total",
        (
            "Failed execute/webhook authentications by route; outcome `limited`: answered 429, "
            "`uncounted`: failed past the ceiling of addresses counted per window (a spread-out flood)."
        ),
        labels=["tenant", "route", "outcome"],
    )
    reconnect = _gauge(
        "rsf_tenant_reconnect_needed",
        "1 while SFMC refuses the tenant's credentials (client secret or refresh token): its writes wait.",
        ["tenant"],
    )
    intake_waiting = _gauge(
        "rsf_intake_entries_waiting",
        "Executions claimed and not yet published to the broker (the intake stream).",
        ["tenant"],
    )
    intake_age = _gauge(
        "rsf_intake_oldest_entry_age_seconds", "Age of the oldest intake entry not yet published.", ["tenant"]
    )
    jobs_running = _gauge(
        "rsf_event_jobs_running", "Event jobs (correct, cancel, withdraw) running.", ["tenant"]
    )
    jobs_to_do = _gauge(
        "rsf_event_jobs_items_to_do", "Executions the running event jobs have yet to work on.", ["tenant"]
    )
    jobs_items = CounterMetricFamily(
        "rsf_event_jobs_items_total",
        "Executions event jobs ended, by kind (correct, cancel, withdraw) and outcome (updated, "
        "unchanged, kept, ended, not_held, gone, cancelled, withdrawn, failed).",
        labels=["tenant", "kind", "outcome"],
    )
    today = _gauge(
        "rsf_performance_today",
        (
            "Today's figures of the tenant's calendar channel in its reporting time zone, by figure "
            "(entered, created, in_calendars, ..., subscribed, net); back to 0 at its midnight."
        ),
        ["tenant", "figure"],
    )
    for name, t in tenants.items():
        info.add_metric([name, str(t.get("status", ""))], 1)
        for figure, n in t.get("performanceToday", {}).get("figures", {}).items():
            today.add_metric([name, figure], n)
        jobs = t.get("eventJobs", {})
        jobs_running.add_metric([name], jobs.get("running", 0))
        jobs_to_do.add_metric([name], jobs.get("toDo", 0))
        for field, n in jobs.get("outcomes", {}).items():
            kind, _, outcome = field.partition(":")
            jobs_items.add_metric([name, kind, outcome], n)
        if "intake" in t:
            intake_waiting.add_metric([name], t["intake"]["waiting"])
            intake_age.add_metric([name], t["intake"]["oldestAgeSeconds"])
        for kind, o in t.get("outbox", {}).items():
            outbox_waiting.add_metric([name, kind], o["waiting"])
            outbox_age.add_metric([name, kind], o["oldestAgeSeconds"])
        for stage, by_class in t.get("deadLetters", {}).items():
            for error_class, n in by_class.items():
                dead.add_metric([name, stage, error_class], n)
        for vendor, lim in t.get("limiter", {}).items():
            paused.add_metric([name, vendor], 1 if lim["paused"] else 0)
            remaining.add_metric([name, vendor], lim["remainingSeconds"])
            deferred.add_metric([name, vendor], lim.get("deferred", 0))
            late_wakes.add_metric([name, vendor], lim.get("lateWakes", 0))
        for state, n in t.get("executes", {}).items():
            if state == "received":
                received.add_metric([name], n)
            elif state == "replayed":
                replayed.add_metric([name], n)
            else:
                executions.add_metric([name, state], n)
        hooks = t.get("webhooks", {})
        webhooks.add_metric([name, "received"], hooks.get("received", 0))
        webhooks.add_metric([name, "duplicate"], hooks.get("duplicates", 0))
        webhooks.add_metric([name, "released"], hooks.get("released", 0))
        for kind, n in t.get("webhookTypes", {}).items():
            webhook_types.add_metric([name, kind], n)
        for vendor, by_class in t.get("calls", {}).items():
            for status_class, n in by_class.items():
                calls.add_metric([name, vendor, status_class], n)
        for vendor, n in t.get("tokenFetches", {}).items():
            tokens.add_metric([name, vendor], n)
        reconnect.add_metric([name], 1 if t.get("reconnectNeeded") else 0)
        for field, n in t.get("authFailures", {}).items():
            route, _, outcome = field.partition(":")
            auth_failures.add_metric([name, route, outcome or "failed"], n)
    workers = _gauge(
        "rsf_worker_heartbeat_age_seconds", "Seconds since a worker's last heartbeat.", ["worker"]
    )
    for worker, age in snap.get("workers", {}).items():
        workers.add_metric([worker], age)
    alive = _gauge("rsf_workers_alive", f"Workers whose heartbeat is younger than {WORKER_STALE_SECONDS} s.")
    alive.add_metric([], sum(1 for age in snap.get("workers", {}).values() if age < WORKER_STALE_SECONDS))
    yield from (info, waiting, unacked, oldest, outbox_waiting, outbox_age, dead, paused, remaining)
    yield from (deferred, late_wakes)
    yield from (auth_failures, intake_waiting, intake_age)
    yield from (executions, received, replayed, webhooks, webhook_types, calls, tokens, reconnect)
    yield from (workers, alive)
    yield from (jobs_running, jobs_to_do, jobs_items)
    yield today
    broker = snap.get("broker")
    if broker is not None:
        up = _gauge("rsf_broker_up", "1 when the Celery broker answered at this scrape.", ["kind"])
        up.add_metric([str(broker.get("kind", ""))], 1 if broker.get("reachable") else 0)
        yield up
    memory = snap.get("redis")
    if memory is not None:
        used = _gauge("rsf_redis_memory_used_bytes", "Memory Redis uses (INFO memory used_memory).")
        used.add_metric([], memory["usedBytes"])
        limit = _gauge(
            "rsf_redis_memory_max_bytes",
            "Redis' maxmemory (0: no limit); at it, with noeviction, Redis refuses writes.",
        )
        limit.add_metric([], memory["maxBytes"])
        yield from (used, limit)
    beat_age = snap.get("beat", {}).get("lastTickAgeSeconds")
    if beat_age is not None:  # never ticked (or forgotten): absent, which the alert also catches
        beat = _gauge("rsf_beat_last_tick_age_seconds", "Seconds since Celery beat last ticked.")
        beat.add_metric([], beat_age)
        yield beat


def redis_up_family() -> GaugeMetricFamily:
    return _gauge("rsf_redis_up", "1 when the exporter could read Redis at this scrape.")


def scrape_duration_family() -> GaugeMetricFamily:
    return _gauge("rsf_scrape_duration_seconds", "Time the exporter took to read Redis for this scrape.")


# A snapshot with every optional part present: metrics(EVERY_PART) yields every family (the docs'
# table of metrics is built from it, with the collector's own two).
EVERY_PART: dict[str, Any] = {
    "broker": {"kind": "redis", "reachable": True},
    "beat": {"lastTickAgeSeconds": 0},
    "redis": {"usedBytes": 0, "maxBytes": 0},
}


def every_family() -> list[Metric]:
    """Each metric family the exporter can answer, without samples' values mattering."""
    return [*metrics(EVERY_PART), redis_up_family(), scrape_duration_family()]


class SnapshotCollector:
    """Reads Redis on each collect(); `rsf_redis_up` says whether that worked."""

    def __init__(self, runtime: Callable[[], Runtime] = get_runtime) -> None:
        self.runtime = runtime

    def describe(self) -> list[Metric]:
        return []  # nothing at registration: Redis is read at scrape time only

    def collect(self) -> Iterator[Metric]:
        started = time.monotonic()
        up = redis_up_family()
        try:
            snap = figures.snapshot(self.runtime())
        except redis.RedisError as exc:
            log.warning("metrics: Redis unreadable: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        yield from metrics(snap)
        up.add_metric([], 1)
        yield up
        took = scrape_duration_family()
        took.add_metric([], time.monotonic() - started)
        yield took


def registry(runtime: Callable[[], Runtime] = get_runtime) -> CollectorRegistry:
    reg = CollectorRegistry()
    reg.register(SnapshotCollector(runtime))
    return reg


def wsgi_app(runtime: Callable[[], Runtime] = get_runtime) -> Callable[..., Iterable[bytes]]:
    """`/metrics` (and any other path, as prometheus-client does) plus `/healthz`."""
    metrics_app = make_wsgi_app(registry(runtime))

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/healthz":
            try:
                runtime().redis.ping()
                status, body = "200 OK", b"ok\n"
            except redis.RedisError:
                status, body = "503 Service Unavailable", b"redis unreachable\n"
            start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
            return [body]
        return metrics_app(environ, start_response)

    return app


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        log.debug("exporter request: %s", format % args)


def make(port: int, host: str = "0.0.0.0", runtime: Callable[[], Runtime] = get_runtime) -> WSGIServer:
    """The HTTP server, bound and not yet serving (tests and the demo run it in a thread)."""
    return make_server(host, port, wsgi_app(runtime), server_class=_Server, handler_class=_QuietHandler)


def _heartbeat_forever(runtime: Callable[[], Runtime], name: str, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            heartbeats.beat(runtime().redis, "exporter", name)
        except redis.RedisError:
            log.warning("exporter heartbeat not written (Redis unavailable)")
        stop.wait(HEARTBEAT_SECONDS)


def serve(port: int, host: str = "0.0.0.0") -> None:
    """Serve `/metrics` and `/healthz` on host:port until interrupted."""
    server = make(port, host)
    stop = threading.Event()
    name = f"{socket.gethostname()}:{port}"
    threading.Thread(target=_heartbeat_forever, args=(get_runtime, name, stop), daemon=True).start()
    log.info("exporter serving /metrics on %s:%s", host, port)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        server.server_close()
