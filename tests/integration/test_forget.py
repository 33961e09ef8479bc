"""`rokt-sfmc forget` on the real stack: after a small run, a forgotten contact leaves no trace in
a full scan of Redis (every key name and every value), and the other contacts keep theirs."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from pipeline.journeys import executions
from pipeline.sandbox import jbsim
from pipeline.sandbox.stack import Stack
from pipeline.stores import subscription_records
from pipeline.subscriptions.subscription_rows import live_subscriptions
from pipeline.vocabulary import OutboxKind
from tests.integration.helpers import cli

pytestmark = pytest.mark.integration

TENANT = "forget"


def keyspace(r) -> dict[str, str]:
    """Every key of the Redis server, with its whole value as text (strings, hashes, lists,
    sets, sorted sets with scores, streams)."""
    readers = {
        "string": lambda pipe, key: pipe.get(key),
        "hash": lambda pipe, key: pipe.hgetall(key),
        "list": lambda pipe, key: pipe.lrange(key, 0, -1),
        "set": lambda pipe, key: pipe.smembers(key),
        "zset": lambda pipe, key: pipe.zrange(key, 0, -1, withscores=True),
        "stream": lambda pipe, key: pipe.xrange(key),
    }
    keys = list(r.scan_iter(count=1000))
    dump: dict[str, str] = {}
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        pipe = r.pipeline(transaction=False)
        for key in chunk:
            pipe.type(key)
        types = pipe.execute()
        pipe = r.pipeline(transaction=False)
        read = [(key, kind) for key, kind in zip(chunk, types, strict=True) if kind in readers]
        for key, kind in read:
            readers[kind](pipe, key)
        for (key, kind), value in zip(read, pipe.execute(), strict=True):
            dump[key] = json.dumps(sorted(value) if kind == "set" else value, default=str)
        assert not [kind for kind in types if kind not in readers and kind != "none"], types
    return dump


def traces(dump: dict[str, str], *needles: str) -> list[str]:
    """The keys whose name or value holds any of the needles (case-insensitive)."""
    lowered = [n.lower() for n in needles]
    return [
        key for key, value in dump.items() if any(n in key.lower() or n in value.lower() for n in lowered)
    ]


def settled(r, contacts: list[jbsim.Contact], quiet: float = 2.0) -> bool:
    """Whether no flush of the tenant is scheduled or under way (no slot held, nothing read
    from an outbox unacknowledged) and every record naming `contacts` stayed the same for
    `quiet` seconds."""
    if list(r.scan_iter(match=f"rsf:{TENANT}:flush-scheduled:*")):
        return False
    for kind in OutboxKind:
        stream = f"rsf:{TENANT}:outbox:{kind}"
        if r.exists(stream) and any(group["pending"] for group in r.xinfo_groups(stream)):
            return False
    needles = [n for c in contacts for n in (c.key, c.email)]

    def view() -> dict[str, str]:
        dump = keyspace(r)
        return {key: dump[key] for key in traces(dump, *needles)}

    first = view()
    time.sleep(quiet)
    return view() == first


def test_a_forgotten_contact_leaves_no_trace_and_the_others_keep_theirs(stack: Stack, tmp_path):
    stack.add_tenant(TENANT)
    stack.webhooks_to(TENANT)
    r = stack.redis
    tag = uuid.uuid4().hex[:8]  # contact keys and emails no other test (or earlier run) has
    contacts = [
        jbsim.Contact(
            key=f"FGT{tag}K{i:03d}",
            first_name="Ava",
            email=f"fgt.{tag}.{i:03d}@example.com",
            city="Perth",
            has_subscription=True,
        )
        for i in range(12)
    ]
    # subscriptions through Rokt's Subscribe webhooks (receiver, task, state, index, outbox)
    jbsim.subscribe_contacts(stack.rokt_url, TENANT, contacts)
    stack.wait(
        lambda: all(live_subscriptions(r, TENANT, c.key) for c in contacts),
        60,
        "every Subscribe webhook processed",
    )
    target, others = contacts[0], contacts[1:]
    target.subscription_id = jbsim.UNKNOWN_SUBSCRIPTION_ID  # its execute fails at Rokt: a dead letter
    payloads = stack.prepare(TENANT, contacts)
    jbsim.drive(stack.execute_url(TENANT), stack.jwt_secret, payloads)
    stack.wait_terminal(TENANT, len(contacts))
    # the flushes the run scheduled still rewrite the outbox for a moment: snapshot once settled
    stack.wait(lambda: settled(r, contacts), 60, "the contacts' records settled")
    runtime = stack.runtime
    (execution,) = runtime.ledger.executions_of_contact(TENANT, target.key)
    ex = runtime.ledger.get(TENANT, execution)
    assert ex.status == "failed"
    assert r.hget(f"rsf:{TENANT}:dlq", execution)
    executions.emit_outcome(runtime, ex)  # a status row not yet flushed (no flush is scheduled)
    assert r.xlen(f"rsf:{TENANT}:outbox:status") >= 1

    before = keyspace(r)
    # the email was only in the subscription: the store holds it now, Redis no more
    assert traces(before, target.key) and not traces(before, target.email)
    assert subscription_records.of_contact(runtime.history, TENANT, [target.email])
    shared = set(traces(before, target.key, target.email, execution))  # keys naming the target too
    # subscriptions: the history store holds them, Redis their index by digest (named by no contact)
    stored = subscription_records.of_contact(runtime.history, TENANT, [c.key for c in contacts])
    assert len(stored) == len(contacts)
    assert live_subscriptions(r, TENANT, target.key)
    for kind in ("exec", "event", "dlq", "outbox"):  # every path left its trace
        assert any(
            key.startswith(f"rsf:{TENANT}:{kind}:") or key == f"rsf:{TENANT}:{kind}" for key in shared
        ), kind
    others_before = {c.key: sorted(traces(before, c.key, c.email)) for c in others}
    # finished executions and subscriptions left Redis: the others' records are in the store
    assert all(runtime.history.executions_of_contact(TENANT, c.key) for c in others)

    done = cli(stack, "forget", "--tenant", TENANT, "--contact", target.key, "--email", target.email)
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    counts = printed["counts"]
    assert counts["executions"] == 1 and counts["subscriptions"] == 1
    assert counts["deadLetters"] >= 1 and counts["outboxEntries"] >= 1
    assert target.key not in done.stdout and target.email not in done.stdout

    after = keyspace(r)
    assert traces(after, target.key, target.email) == []
    assert subscription_records.of_contact(runtime.history, TENANT, [target.key, target.email]) == []
    assert len(subscription_records.of_contact(runtime.history, TENANT, [c.key for c in others])) == len(
        others
    )
    assert all(runtime.history.executions_of_contact(TENANT, c.key) for c in others)
    assert live_subscriptions(r, TENANT, target.key) == []
    assert traces(after, execution) == []  # nor any record naming its execution (rows, releases, letters)
    # the others are untouched: the same keys name them, with the same values
    for contact in others:
        named = sorted(traces(after, contact.key, contact.email))
        assert named == others_before[contact.key], contact.key
        assert all(after[key] == before[key] for key in named if key not in shared), contact.key
    audit = [json.loads(raw) for raw in r.zrange(f"rsf:{TENANT}:erasures", 0, -1)]
    assert audit and audit[-1]["counts"] == counts and audit[-1]["tenant"] == TENANT

    # a batch of erasure requests: two more people from a file, each erased as --contact erases
    batch, rest = others[:2], others[2:]
    people = tmp_path / "erasures.csv"
    people.write_text("contact,email\n" + "".join(f"{c.key},{c.email}\n" for c in batch))
    done = cli(stack, "forget", "--tenant", TENANT, "--from", str(people))
    assert done.returncode == 0, done.stderr
    printed = [json.loads(line) for line in done.stdout.splitlines()]
    assert [record["line"] for record in printed] == [2, 3]
    assert [(p["counts"]["executions"], p["counts"]["subscriptions"]) for p in printed] == [(1, 1)] * 2
    assert not any(n in done.stdout + done.stderr for c in batch for n in (c.key, c.email))
    final = keyspace(r)
    assert traces(final, *[n for c in batch for n in (c.key, c.email)]) == []
    assert subscription_records.of_contact(runtime.history, TENANT, [c.key for c in batch]) == []
    assert not any(runtime.history.executions_of_contact(TENANT, c.key) for c in batch)
    for contact in rest:
        assert sorted(traces(final, contact.key, contact.email)) == others_before[contact.key], contact.key
    assert len(subscription_records.of_contact(runtime.history, TENANT, [c.key for c in rest])) == len(rest)
    assert len(r.zrange(f"rsf:{TENANT}:erasures", 0, -1)) == len(audit) + 2
