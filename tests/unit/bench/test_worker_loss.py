"""The worker_loss row of the Performance table, and what counts as an execution a worker held."""

from __future__ import annotations

from typing import Any

from bench import worker_loss
from bench.markdown import worker_loss_rows

LOSS: dict[str, Any] = {
    "redis_s": 612.4,
    "rabbitmq_s": 1.8,
    "executions": 1000,
    "instances": "2 x -c 4 + beat",
    "visibility_timeout_s": 900,
    "reconcile_queued_after_s": 600.0,
    "redis": {"seconds": 612.4, "held": 9, "how": "reconciler re-drive", "lost": 0, "duplicates": 0},
    "rabbitmq": {"seconds": 1.8, "held": 8, "how": "broker redelivery", "lost": 0, "duplicates": 0},
}


def test_the_row_puts_rabbitmq_beside_redis_with_how_each_recovered():
    [(label, figure, ours, baseline)] = worker_loss_rows(LOSS)
    assert "1,000 executions" in label and "lost" in figure
    assert ours.startswith("RabbitMQ: 1.8 s (broker redelivery, 8 held) · lost 0 · twice 0")
    assert baseline.startswith("Redis: 612.4 s (reconciler re-drive, 9 held; re-drive after 600 s")
    assert worker_loss_rows(None) == []


def test_without_rabbitmq_the_row_says_it_was_not_measured():
    loss = {**LOSS, "rabbitmq_s": None, "rabbitmq": {"seconds": None, "reason": "not reachable"}}
    [(_label, _figure, ours, _baseline)] = worker_loss_rows(loss)
    assert ours == "RabbitMQ not reachable: not measured"


class _Inspect:
    def __init__(self, hostname: str) -> None:
        self.hostname = hostname

    def active(self) -> dict:
        return {self.hostname: [{"name": "rsf.create_rokt_event", "args": ["loss", "e1"]}]}

    def reserved(self) -> dict:
        return {
            self.hostname: [
                {"name": "rsf.render_event", "args": ["loss", "e2"]},
                {"name": "rsf.render_event", "args": ["other", "e3"]},  # another tenant
                {"name": "rsf.flush_status_rows", "args": ["loss"]},  # not an execution
            ]
        }

    def scheduled(self) -> dict:  # a countdown the worker holds wraps its request
        return {self.hostname: [{"request": {"name": "rsf.create_rokt_event", "args": ["loss", "e1"]}}]}


def test_held_executions_are_the_tenant_s_stage_tasks_running_reserved_or_scheduled(monkeypatch):
    class Stack:
        def worker_hostnames(self) -> dict[str, str]:
            return {"loss-1": "loss-1@host"}

    class Control:
        def inspect(self, destination: list[str], timeout: float) -> _Inspect:
            return _Inspect(destination[0])

    class Producer:
        control = Control()

    monkeypatch.setattr(worker_loss.dispatch, "producer", lambda: Producer())
    assert worker_loss.held_executions(Stack(), "loss-1") == ["e1", "e2"]  # type: ignore[arg-type]
