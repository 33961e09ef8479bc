"""`erasure`: `rokt-sfmc forget` of 1,000 contacts while 100,000 executions wait in the intake stream.

The broker is down (no pump runs), so every execution execute accepted waits in its tenant's
intake stream: the backlog is largest exactly when an erasure request may arrive. Each contact
has one waiting execution; the contacts forgotten are spread over the stream.

- `by_id`: `forget --index-only` as it runs: each waiting entry deleted by the id its claim
  recorded, in the script that erases the record.
- `stream_pass` (the baseline, the same Redis): forgets of records that hold no entry id, as an
  older version claimed them, so each forget reads the whole stream once: what every
  execution's erasure cost before the id was kept. A tenth as many contacts (it is that slow);
  `stream_pass_s_for_all` is its time per contact times `forgets`.
- `scan_ms_per_contact`: `forget` with its SCANs of the keyspace (the default, for records from
  before the contact index) on a few contacts, one by one: its time grows with the keyspace, not
  the stream.
- `batch_scan_s`: the default `forget` (with the SCANs) of another `forgets` contacts in one
  batch (`forget --from`, `forget_contacts`): each walk is made once for the whole batch, where
  one by one it takes `scan_s_for_all` (`scan_ms_per_contact` times `forgets`).

`python -m bench.erasure [WAITING] [FORGETS]` runs it alone on `REDIS_URL` (a database it may
flush) and prints the figures.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from typing import Any

from pipeline.infra import keys
from pipeline.stores.ledger import event_id_for
from pipeline.tenancy.handles import Runtime
from pipeline.upkeep import privacy

TENANT = "erase"
SCAN_SAMPLE = 5  # contacts forgotten with the keyspace SCANs (each reads every key)
BASELINE_SHARE = 10  # the baseline forgets a tenth as many contacts


def sizes(quick: bool) -> dict[str, int]:
    return {"waiting": 10_000, "forgets": 100} if quick else {"waiting": 100_000, "forgets": 1_000}


def run(stack: Any, quick: bool) -> dict[str, dict[str, Any]]:
    from bench.harness import reset

    reset(stack)
    figures = measure(stack.runtime, **sizes(quick))
    stack.redis.flushdb()
    return {"erasure": figures}


def contact(i: int) -> str:
    return f"{TENANT}-{i:07d}"


def seed(rt: Runtime, waiting: int) -> list[str]:
    """`waiting` executions claimed as execute claims them (one contact each), none pumped."""
    executions = []
    for i in range(waiting):
        execution = f"{TENANT}-x{i:07d}"
        record = {
            "contactKey": contact(i),
            "eventId": event_id_for(execution),
            "journeyId": "journey-erase",
            "activityId": "activity-erase",
            "definitionInstanceId": execution,
            "args": {"templateId": "tpl-1", "FirstName": "Ava", "City": "Perth"},
        }
        if not rt.ledger.claim(TENANT, execution, record):
            raise RuntimeError(f"{execution} claimed twice")
        executions.append(execution)
    return executions


def forget_batch(rt: Runtime, contacts: list[str]) -> float:
    """Seconds to forget `contacts` in one batch with the keyspace SCANs, as `forget --from` runs it."""
    started = time.perf_counter()
    records = privacy.forget_contacts(rt, TENANT, [(key, None) for key in contacts])
    if [record["counts"]["executions"] for record in records] != [1] * len(contacts):
        raise RuntimeError("a contact's execution was not found")
    return time.perf_counter() - started


def forget_all(rt: Runtime, contacts: list[str], scan: bool = False) -> float:
    """Seconds to forget `contacts`, one `forget_contact` each as the command runs it."""
    started = time.perf_counter()
    for key in contacts:
        if privacy.forget_contact(rt, TENANT, key, scan=scan)["counts"]["executions"] != 1:
            raise RuntimeError("a contact's execution was not found")
    return time.perf_counter() - started


def waiting_of(rt: Runtime) -> set[str]:
    return {values["x"] for _id, values in rt.redis.xrange(keys.intake(TENANT))}


def measure(rt: Runtime, waiting: int, forgets: int) -> dict[str, Any]:
    r = rt.redis
    started = time.perf_counter()
    executions = seed(rt, waiting)
    seeded_s = time.perf_counter() - started
    baseline = max(1, forgets // BASELINE_SHARE)
    total = forgets + baseline + SCAN_SAMPLE + forgets
    picks = [i * (waiting // total) for i in range(total)]
    ours, older = picks[:forgets], picks[forgets : forgets + baseline]
    scanned = picks[forgets + baseline : forgets + baseline + SCAN_SAMPLE]
    batched = picks[forgets + baseline + SCAN_SAMPLE :]
    pipe = r.pipeline(transaction=False)
    for i in older:  # as an older version claimed them: no entry id kept
        pipe.hdel(keys.execution(TENANT, executions[i]), "intakeId")
    pipe.execute()

    by_id_s = forget_all(rt, [contact(i) for i in ours])
    left = waiting_of(rt)
    if len(left) != waiting - forgets or left & {executions[i] for i in ours}:
        raise RuntimeError("by id: the stream does not hold exactly the others' entries")
    stream_pass_s = forget_all(rt, [contact(i) for i in older])
    left = waiting_of(rt)
    if len(left) != waiting - forgets - baseline or left & {executions[i] for i in older}:
        raise RuntimeError("stream pass: the stream does not hold exactly the others' entries")
    keys_scanned = int(r.dbsize())
    scan_s = forget_all(rt, [contact(i) for i in scanned], scan=True)
    batch_scan_s = forget_batch(rt, [contact(i) for i in batched])
    left = waiting_of(rt)
    if len(left) != waiting - forgets - baseline - SCAN_SAMPLE - forgets or left & {
        executions[i] for i in batched
    }:
        raise RuntimeError("batch: the stream does not hold exactly the others' entries")
    return {
        "waiting": waiting,
        "forgets": forgets,
        "keys": int(r.dbsize()),
        "seed_s": round(seeded_s, 1),
        "by_id_s": round(by_id_s, 2),
        "by_id_ms_per_contact": round(by_id_s * 1000 / forgets, 2),
        "stream_pass_contacts": baseline,
        "stream_pass_ms_per_contact": round(stream_pass_s * 1000 / baseline, 1),
        "stream_pass_s_for_all": round(stream_pass_s * forgets / baseline),
        "scan_contacts": len(scanned),
        "scan_ms_per_contact": round(scan_s * 1000 / len(scanned)),
        "scan_s_for_all": round(scan_s * forgets / len(scanned)),
        "scan_keys": keys_scanned,
        "batch_scan_s": round(batch_scan_s, 2),
        "batch_scan_ms_per_contact": round(batch_scan_s * 1000 / forgets, 2),
        "speedup": round(stream_pass_s * forgets / baseline / by_id_s),
    }


def main(argv: list[str] | None = None) -> int:
    import redis

    from pipeline.settings import load_settings

    args = sys.argv[1:] if argv is None else argv
    waiting = int(args[0]) if args else 100_000
    forgets = int(args[1]) if len(args) > 1 else 1_000
    url = os.environ.get("REDIS_URL")
    if not url:
        print("REDIS_URL must name a Redis database this may flush", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="rokt-sfmc-erasure-") as tmp:
        history = os.environ.get("HISTORY_URL") or f"sqlite:///{tmp}/history.db"
        r = redis.Redis.from_url(url, decode_responses=True)
        r.flushdb()
        try:
            figures = measure(
                Runtime(load_settings({"REDIS_URL": url, "HISTORY_URL": history}), r), waiting, forgets
            )
        finally:
            r.flushdb()
    for name, value in figures.items():
        print(f"{name:28} {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
