"""`worker_loss`: a whole worker instance dies mid-run; how long until what it held runs elsewhere.

Two worker instances (each -c 4, every queue) and beat, as deployed; a run of executions in
flight with Rokt answering in 150 ms. Then one instance is killed the way a lost container dies:
SIGKILL of its main process and, with it, its pool (its process group). Just before the kill,
`inspect active/reserved/scheduled` of that instance lists the executions it held. The figure is
the seconds from the kill until every one of them is terminal in the ledger, and how each got
there: broker redelivery (RabbitMQ hands the unacknowledged messages of a closed connection to
the other instance at once), or the reconciler's re-drive (on Redis the messages stay in
kombu's `unacked` hash until the 900 s visibility timeout; before that, beat's reconcile re-drives
executions still open RECONCILE_QUEUED_AFTER seconds after their claim). Each broker runs on its
own stack (own Redis, simulators; RabbitMQ: a vhost of its own, `pipeline.sandbox.rabbitmq`).
Lost (never terminal) and duplicate Rokt calendar entries must both be 0.

BENCH_QUICK=1: fewer executions and RECONCILE_QUEUED_AFTER=20 on Redis (the deployed 600 s
makes the full run take over 10 minutes), reported beside the figure.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench.harness import journey
from celeryconfig import VISIBILITY_TIMEOUT
from pipeline.infra import dispatch, keys
from pipeline.sandbox import rabbitmq
from pipeline.sandbox.stack import Stack
from pipeline.settings import Settings

TENANT = "loss"
INSTANCES, CONCURRENCY = 2, 4
ROKT_LATENCY_MS = 150
QUICK_QUEUED_AFTER = 20.0
POLL_SECONDS = 0.2
STAGE_TASKS = ("rsf.render_event", "rsf.create_rokt_event")  # args [tenant, execution id]


def run(stack: Stack, quick: bool) -> dict[str, dict[str, Any]]:
    count = 300 if quick else 1_000
    queued_after = QUICK_QUEUED_AFTER if quick else Settings.reconcile_queued_after
    base = Path(stack.run_dir) / "worker-loss"
    redis = measure(base / "redis", None, count, queued_after)
    try:
        with rabbitmq.temporary_vhost("rsf-bench") as url:
            amqp: dict[str, Any] = measure(base / "rabbitmq", url, count, queued_after)
    except rabbitmq.RabbitMQUnavailable as exc:
        amqp = {"seconds": None, "reason": str(exc)}
    return {
        "worker_loss": {
            "redis_s": redis["seconds"],
            "rabbitmq_s": amqp["seconds"],
            "executions": count,
            "instances": f"{INSTANCES} x -c {CONCURRENCY} + beat",
            "rokt_latency_ms": ROKT_LATENCY_MS,
            "visibility_timeout_s": VISIBILITY_TIMEOUT,
            "reconcile_queued_after_s": queued_after,
            "redis": redis,
            "rabbitmq": amqp,
        }
    }


def measure(run_dir: Path, broker_url: str | None, count: int, queued_after: float) -> dict[str, Any]:
    """One broker: the run, the kill, the recovery of what the killed instance held."""
    run_dir.mkdir(parents=True, exist_ok=True)
    env = {"RECONCILE_QUEUED_AFTER": str(queued_after)}
    with Stack(run_dir, {TENANT: {}}, env=env, worker_name="loss", broker_url=broker_url) as stack:
        stack.faults("rokt", latency_ms=ROKT_LATENCY_MS)
        payloads = journey(stack, TENANT, count)
        stack.start_workers(INSTANCES, CONCURRENCY)
        stack.start_beat()
        ids = stack.enqueue(TENANT, payloads)
        ledger = stack.runtime.ledger
        # mid-run: a tenth of the executions done, the rest queued or held by the instances
        stack.wait(lambda: ledger.open_count(TENANT) <= count * 0.9, 120, "a tenth of the run")
        victim = stack.workers[0]
        held = held_executions(stack, victim.name)
        scores = {e: ledger.r.zscore(keys.open_executions(TENANT), keys.execution(TENANT, e)) for e in held}
        held = [e for e, score in scores.items() if score is not None]  # still open at the kill
        killed = time.monotonic()
        victim.kill()  # SIGKILL to its process group: main process and pool, as a container dies
        victim.stop(timeout=5)
        with stack._lock:
            stack.workers.remove(victim)
        how = recovery(stack, held, scores, killed, deadline=queued_after + 180)
        recovered = max(how.values(), key=lambda v: v[0])[0] if how else 0.0
        stack.wait(lambda: ledger.open_count(TENANT) == 0, queued_after + 300, "every execution terminal")
        finished = time.monotonic() - killed
        rokt = stack.rokt_state()
        lost = sum(1 for e in ids if ledger.get(TENANT, e) is None)  # claimed and gone
        by = [v[1] for v in how.values()]
        return {
            "seconds": round(recovered, 1),
            "held": len(held),
            "redelivered": by.count("broker redelivery"),
            "redriven": by.count("reconciler re-drive"),
            "how": _how(by),
            "all_terminal_s": round(finished, 1),
            "lost": lost + ledger.open_count(TENANT),
            "duplicates": int(rokt["duplicate_calendar_entries"]),
        }


def held_executions(stack: Stack, worker_name: str, tenant: str = TENANT) -> list[str]:
    """The executions whose render or create task the instance has running, reserved
    (prefetched) or scheduled (a countdown it holds in memory)."""
    hostname = stack.worker_hostnames()[worker_name]
    inspect = dispatch.producer().control.inspect(destination=[hostname], timeout=3.0)
    found: list[str] = []
    for replies in (inspect.active(), inspect.reserved(), inspect.scheduled()):
        for task in (replies or {}).get(hostname, []):
            request = task.get("request", task)  # scheduled wraps the request
            args = request.get("args") or []
            if request.get("name") in STAGE_TASKS and len(args) >= 2 and args[0] == tenant:
                found.append(str(args[1]))
    return list(dict.fromkeys(found))


def recovery(
    stack: Stack, held: list[str], scores: dict[str, Any], killed: float, deadline: float
) -> dict[str, tuple[float, str]]:
    """Seconds after the kill at which each held execution left the open set, and how: a score
    moved past its value at the kill is the reconciler's touch before its re-drive."""
    ledger = stack.runtime.ledger
    key = keys.open_executions(TENANT)
    touched: set[str] = set()
    done: dict[str, tuple[float, str]] = {}
    while len(done) < len(held):
        if time.monotonic() - killed > deadline:
            left = len(held) - len(done)
            raise TimeoutError(f"worker_loss: {left} held executions still open after {deadline} s")
        for execution in held:
            if execution in done:
                continue
            score = ledger.r.zscore(key, keys.execution(TENANT, execution))
            if score is None:
                way = "reconciler re-drive" if execution in touched else "broker redelivery"
                done[execution] = (time.monotonic() - killed, way)
            elif score > scores[execution]:
                touched.add(execution)
        stack.check_alive()
        time.sleep(POLL_SECONDS)
    return done


def _how(ways: list[str]) -> str:
    kinds = sorted(set(ways))
    return " + ".join(kinds) if kinds else "nothing held"
