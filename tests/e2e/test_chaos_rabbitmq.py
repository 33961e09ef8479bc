"""`rokt-sfmc demo --chaos kill-workers` on RabbitMQ (BROKER_URL=amqp://..., a vhost of its own):
whole worker instances SIGKILLed every few seconds; nothing lost, nothing twice. Skipped, saying
how to run it, where RABBITMQ_URL answers no RabbitMQ (pipeline/sandbox/rabbitmq.py)."""

import contextlib

import pytest

from pipeline.sandbox import rabbitmq
from tests.e2e.test_chaos import CHAOS_TEST_TIMEOUT, assert_nothing_lost_nor_twice, chaos_report

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(CHAOS_TEST_TIMEOUT)]


def test_kill_workers_on_rabbitmq_loses_nothing_and_sends_nothing_twice(tmp_path):
    with contextlib.ExitStack() as cleanup:
        try:
            url = cleanup.enter_context(rabbitmq.temporary_vhost("rsf-chaos"))
        except rabbitmq.RabbitMQUnavailable as exc:
            pytest.skip(str(exc))
        report = chaos_report(tmp_path, "kill-workers", {"BROKER_URL": url})
    assert report["chaos"].get("workers_killed", 0) > 0 or any(
        v > 0 for k, v in report["chaos"].items() if k not in ("scenarios", "supervisor_restarts")
    ), report["chaos"]
    assert_nothing_lost_nor_twice(report)
