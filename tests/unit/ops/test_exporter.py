"""The exporter: metric families from a snapshot, Redis read at scrape time, HTTP endpoints."""

import threading

import pytest
import redis
import requests
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from pipeline.ops import exporter, heartbeats
from pipeline.stores.ratelimit import RateLimiter


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def scrape(runtime) -> dict[tuple[str, tuple], float]:
    return samples(generate_latest(exporter.registry(lambda: runtime)).decode())


def test_every_family_follows_the_naming_conventions(runtime, fake_redis):
    heartbeats.beat(fake_redis, "worker", "w-1@h")
    heartbeats.beat(fake_redis, "beat", "beat")
    text = generate_latest(exporter.registry(lambda: runtime)).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name, family in families.items():
        assert name.startswith("rsf_"), name
        if family.type == "counter":
            assert all(s.name.endswith("_total") for s in family.samples if not s.name.endswith("_created"))
        assert not name.endswith("_total") or family.type == "counter", name
    assert "rsf_vendor_calls" in families and families["rsf_vendor_calls"].type == "counter"
    assert {"rsf_worker_heartbeat_age_seconds", "rsf_beat_last_tick_age_seconds", "rsf_redis_up"} <= set(
        families
    )


def test_figures_from_redis_at_scrape_time(runtime, fake_redis):
    before = scrape(runtime)
    assert before[("rsf_limiter_paused", (("tenant", "default"), ("vendor", "rokt")))] == 0
    assert before[("rsf_redis_up", ())] == 1
    assert before[("rsf_workers_alive", ())] == 0
    assert not any(name == "rsf_beat_last_tick_age_seconds" for name, _ in before)  # never ticked: absent
    limiter = RateLimiter(fake_redis, "default", "rokt", 10)
    limiter.pause(60)
    fake_redis.incrby(limiter.deferred_key, 7)
    fake_redis.incrby(limiter.late_key, 2)
    fake_redis.hincrby("rsf:default:calls", "rokt:429", 4)
    fake_redis.lpush("rokt.default", '{"headers": {"id": "m"}, "properties": {}}')
    heartbeats.beat(fake_redis, "worker", "w-1@h")
    after = scrape(runtime)
    assert after[("rsf_limiter_paused", (("tenant", "default"), ("vendor", "rokt")))] == 1
    assert after[("rsf_limiter_pause_remaining_seconds", (("tenant", "default"), ("vendor", "rokt")))] > 50
    assert after[("rsf_limiter_deferred_total", (("tenant", "default"), ("vendor", "rokt")))] == 7
    assert after[("rsf_limiter_late_wakes_total", (("tenant", "default"), ("vendor", "rokt")))] == 2
    key = ("rsf_vendor_calls_total", (("status_class", "429"), ("tenant", "default"), ("vendor", "rokt")))
    assert after[key] == 4
    assert after[("rsf_queue_messages_waiting", (("queue", "rokt.default"), ("tenant", "default")))] == 1
    assert after[("rsf_workers_alive", ())] == 1
    assert ("rsf_worker_heartbeat_age_seconds", (("worker", "w-1@h"),)) in after


def test_executions_split_into_a_state_gauge_and_counters():
    snap = {
        "tenants": {
            "t": {
                "status": "active",
                "executes": {"queued": 2, "confirmed": 5, "received": 7, "replayed": 1},
                "deadLetters": {"create_event": {"permanent": 3}},
                "webhooks": {"received": 4, "duplicates": 1},
                "webhookTypes": {"SubscriptionEventAdded": 4},
                "reconnectNeeded": True,
            }
        },
        "workers": {"w-1@h": 75.0, "w-2@h": 3.0},
        "beat": {"lastTickAgeSeconds": 4.0},
    }
    text = generate_latest(_Static(snap)).decode()
    got = samples(text)
    assert got[("rsf_executions", (("state", "confirmed"), ("tenant", "t")))] == 5
    assert got[("rsf_executions_received_total", (("tenant", "t"),))] == 7
    assert got[("rsf_executions_replayed_total", (("tenant", "t"),))] == 1
    assert (
        got[("rsf_dead_letters", (("error_class", "permanent"), ("stage", "create_event"), ("tenant", "t")))]
        == 3
    )
    assert got[("rsf_webhooks_total", (("outcome", "duplicate"), ("tenant", "t")))] == 1
    assert got[("rsf_webhooks_by_type_total", (("tenant", "t"), ("type", "SubscriptionEventAdded")))] == 4
    assert got[("rsf_tenant_reconnect_needed", (("tenant", "t"),))] == 1
    assert got[("rsf_workers_alive", ())] == 1  # one of two is stale
    assert got[("rsf_beat_last_tick_age_seconds", ())] == 4


class _Static:
    """A registry-like object exporting a fixed snapshot (generate_latest only calls collect)."""

    def __init__(self, snap):
        self.snap = snap

    def collect(self):
        return exporter.metrics(self.snap)


def test_redis_unreachable_is_a_metric_not_a_failed_scrape():
    class Down:
        @property
        def redis(self):
            raise redis.ConnectionError("away")

        @property
        def registry(self):
            raise redis.ConnectionError("away")

    got = samples(generate_latest(exporter.registry(lambda: Down())).decode())
    assert got == {("rsf_redis_up", ()): 0}


@pytest.fixture
def served(runtime):
    server = exporter.make(0, "127.0.0.1", lambda: runtime)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_the_http_server_answers_metrics_and_healthz(served):
    metrics = requests.get(f"{served}/metrics", timeout=5)
    assert metrics.status_code == 200 and "rsf_redis_up 1.0" in metrics.text
    assert metrics.headers["Content-Type"].startswith("text/plain")
    health = requests.get(f"{served}/healthz", timeout=5)
    assert (health.status_code, health.text) == (200, "ok\n")


def test_healthz_answers_503_when_redis_is_away():
    class Down:
        class redis:  # stands in for the Runtime's attribute
            @staticmethod
            def ping():
                raise redis.ConnectionError("away")

    app = exporter.wsgi_app(lambda: Down())
    answered = []
    body = app(
        {"PATH_INFO": "/healthz", "REQUEST_METHOD": "GET"}, lambda status, headers: answered.append(status)
    )
    assert answered == ["503 Service Unavailable"] and b"redis" in b"".join(body)


def test_event_jobs_running_their_work_left_and_their_outcomes_are_scraped(runtime, fake_redis):
    from pipeline.journeys import event_jobs
    from pipeline.journeys.templates import create_template
    from pipeline.vocabulary import JobKind, JobOutcome

    template = create_template(
        fake_redis, "default", {"title": "T", "start": "2030-01-01T09:00:00", "timezone": "UTC"}
    )
    job = event_jobs.start_job(
        runtime, "default", JobKind.CORRECT, started_by="t", template_id=template["id"]
    )
    fake_redis.hset(f"rsf:default:event-job:{job.job_id}", mapping={"total": 5, "doneItems": 2})
    event_jobs.record_outcome(runtime, job, "e1", JobOutcome.UPDATED)
    event_jobs.record_outcome(runtime, job, "e1", JobOutcome.UPDATED)  # once per execution
    event_jobs.record_outcome(runtime, job, "e2", JobOutcome.UNCHANGED)
    found = scrape(runtime)
    assert found[("rsf_event_jobs_running", (("tenant", "default"),))] == 1
    assert found[("rsf_event_jobs_items_to_do", (("tenant", "default"),))] == 3
    items = "rsf_event_jobs_items_total"
    assert found[(items, (("kind", "correct"), ("outcome", "updated"), ("tenant", "default")))] == 1
    assert found[(items, (("kind", "correct"), ("outcome", "unchanged"), ("tenant", "default")))] == 1


def test_todays_figures_in_the_tenants_zone_are_scraped_as_they_were_counted(runtime, fake_redis):
    from pipeline.infra import keys
    from pipeline.stores import performance
    from pipeline.stores.ledger import event_id_for

    for n in range(3):
        record = {"contactKey": f"C{n}", "eventId": event_id_for(f"e{n}"), "activityId": "a", "args": {}}
        runtime.ledger.claim("default", f"e{n}", record)
    today = runtime.reporting_days.today("default")
    fake_redis.hset(keys.performance_day("default", today), mapping={"*|subscribed": 4, "*|unsubscribed": 1})
    fake_redis.hset(keys.performance_day("default", "2000-01-01"), "*|entered", 99)  # not today: absent
    found = scrape(runtime)
    figures = performance.read_days(fake_redis, "default", [today])[0].figures
    for figure, n in figures.items():
        assert found[("rsf_performance_today", (("figure", figure), ("tenant", "default")))] == n
    assert found[("rsf_performance_today", (("figure", "entered"), ("tenant", "default")))] == 3
    assert found[("rsf_performance_today", (("figure", "net"), ("tenant", "default")))] == 3
    # one series per tenant and figure, never per activity (activities are unbounded)
    assert all(
        dict(labels).keys() == {"tenant", "figure"}
        for name, labels in found
        if name == "rsf_performance_today"
    )
