"""BROKER_URL: the setting, celeryconfig on each broker kind, queue declarations, whole-second
countdowns on RabbitMQ, and queue figures where RabbitMQ is away."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from celery import Celery
from prometheus_client.core import Metric

from pipeline.infra import broker
from pipeline.infra.queues import worker_queues
from pipeline.ops import exporter, figures
from pipeline.settings import SETTINGS_TABLE, load_settings

AMQP = "amqp://rokt:s3cret@rabbit.test:5672/rokt"


def test_the_broker_is_redis_url_without_broker_url():
    settings = load_settings({"REDIS_URL": "redis://r.test:6379/0"})
    assert settings.broker_url == "" and settings.broker == "redis://r.test:6379/0"
    assert load_settings({"REDIS_URL": "redis://r.test:6379/0", "BROKER_URL": AMQP}).broker == AMQP
    assert "BROKER_URL" in {name for name, _meaning, _default in SETTINGS_TABLE}


@pytest.mark.parametrize("bad", ["rabbit.test:5672", "http://rokt:s3cret@rabbit.test/", "amqp:/x"])
def test_a_broker_url_of_no_known_scheme_is_refused_without_showing_it(bad):
    with pytest.raises(ValueError, match="BROKER_URL") as info:
        load_settings({"BROKER_URL": bad})
    assert "s3cret" not in str(info.value) and "amqp://" in str(info.value)


def _celeryconfig(env: dict[str, str]) -> dict:
    """celeryconfig as a process with `env` reads it (it reads the settings at import)."""
    code = (
        "import json, celeryconfig as c\n"
        "print(json.dumps({'broker_url': c.broker_url, 'transport': c.broker_transport_options,"
        " 'queues': {q.name: [q.exchange.name, q.exchange.type, q.routing_key, q.queue_arguments]"
        " for q in c.task_queues}, 'missing': getattr(c, 'task_create_missing_queue_type', None),"
        " 'missing_exchange': getattr(c, 'task_create_missing_queue_exchange_type', None),"
        " 'redbeat': c.redbeat_redis_url, 'visibility': getattr(c, 'visibility_timeout', None)}))"
    )
    base = {"PATH": "/usr/bin:/bin", "REDIS_URL": "redis://r.test:6379/3"}
    done = subprocess.run(
        [sys.executable, "-c", code], env={**base, **env}, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_on_rabbitmq_every_queue_is_a_quorum_queue_with_a_topic_exchange_and_publishes_are_confirmed():
    conf = _celeryconfig({"BROKER_URL": AMQP})
    assert conf["broker_url"] == AMQP
    assert conf["transport"]["confirm_publish"] is True
    assert "visibility_timeout" not in conf["transport"] and conf["visibility"] is None
    assert conf["queues"]["render"] == ["render", "topic", "render", {"x-queue-type": "quorum"}]
    assert set(conf["queues"]) == set(worker_queues({}))  # the shared queues, every one quorum
    assert all(q[3] == {"x-queue-type": "quorum"} and q[1] == "topic" for q in conf["queues"].values())
    assert (conf["missing"], conf["missing_exchange"]) == ("quorum", "topic")  # tenant queues alike
    assert conf["redbeat"] == "redis://r.test:6379/3"  # beat's schedule stays on Redis


def test_on_redis_the_queues_and_the_visibility_timeout_are_as_before():
    conf = _celeryconfig({})
    assert conf["broker_url"] == "redis://r.test:6379/3"
    assert conf["transport"]["visibility_timeout"] == 900 == conf["visibility"]
    assert conf["queues"]["render"][3] is None and conf["missing"] is None


def test_queue_declarations_per_broker():
    q = broker.queue("rokt.acme", amqp=True)
    assert (q.exchange.name, q.exchange.type, q.routing_key) == ("rokt.acme", "topic", "rokt.acme")
    assert q.queue_arguments == {"x-queue-type": "quorum"} and q.durable
    assert broker.queue("rokt.acme", amqp=False).queue_arguments is None


@pytest.mark.parametrize(
    ("countdown", "expected"), [(0.02, 1), (0.999, 1), (1.0, 1), (1.2, 2), (299.5, 300), (0, 0), (-3, -3)]
)
def test_countdowns_become_whole_seconds_rounded_up(countdown, expected):
    _args, kwargs = broker.whole_seconds(("t", [1], None), {"countdown": countdown})
    assert kwargs["countdown"] == expected


def test_an_eta_becomes_a_countdown_and_a_positional_countdown_a_keyword():
    soon = datetime.now(UTC) + timedelta(seconds=2.4)
    _args, kwargs = broker.whole_seconds(("t",), {"eta": soon})
    assert kwargs["eta"] is None and kwargs["countdown"] == 3
    _args, kwargs = broker.whole_seconds(("t",), {"eta": datetime.now(UTC) - timedelta(seconds=5)})
    assert kwargs["eta"] is None and kwargs["countdown"] is None  # past: now
    args, kwargs = broker.whole_seconds(("t", [1], {}, 0.5), {"task_id": "x"})
    assert args == ("t", [1], {}) and kwargs == {"task_id": "x", "countdown": 1}
    with pytest.raises(TypeError, match="by keyword"):
        broker.whole_seconds(("t", [1], {}, 0.5, None, "task-id"), {})


def test_every_app_rounds_countdowns_on_rabbitmq_only(monkeypatch):
    broker.apply()
    assert Celery._rsf_original_send_task is not broker._send_task  # one wrapper, kept
    sent: list[dict] = []
    monkeypatch.setattr(Celery, "_rsf_original_send_task", lambda self, *a, **kw: sent.append(kw))
    # (the unit conftest replaces Celery.send_task itself: call the wrapper as the class would)
    broker._send_task(Celery("t", broker=AMQP, set_as_current=False), "x", countdown=0.3)
    broker._send_task(Celery("t", broker="redis://r.test/0", set_as_current=False), "x", countdown=0.3)
    assert [s["countdown"] for s in sent] == [1, 0.3]


def test_queue_figures_on_rabbitmq_away_are_none_and_say_so():
    queues, reachable = figures.amqp_queue_figures("amqp://guest:guest@127.0.0.1:1//", ["render", "rokt"])
    assert reachable is False
    assert queues["render"] == {"waiting": None, "unacked": None, "oldestAgeSeconds": None}


def test_the_exporter_leaves_out_figures_the_broker_does_not_have():
    snap = {
        "sharedQueues": {"render": {"waiting": 4, "unacked": None, "oldestAgeSeconds": None}},
        "broker": {"kind": "rabbitmq", "reachable": True},
    }
    families: dict[str, Metric] = {m.name: m for m in exporter.metrics(snap)}
    assert [s.value for s in families["rsf_queue_messages_waiting"].samples] == [4]
    assert families["rsf_queue_messages_unacked"].samples == []
    assert [(s.labels, s.value) for s in families["rsf_broker_up"].samples] == [({"kind": "rabbitmq"}, 1)]
