"""The check that no Redis key name holds personal data: after the integration session, no key
name of its Redis carries a contact key or an email the run saw (SECURITY.md: key names are
visible to SCAN, MONITOR, slow logs and keyspace notifications). The integration session runs
it before its stack stops; the unit tests show it can fail."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

import redis
import sqlalchemy as sa

from pipeline.infra import keys
from pipeline.stores.history import HistoryStore, executions
from pipeline.stores.subscription_records import subscriptions
from tests.log_check import EMAIL

SANDBOX_CONTACT = re.compile(r"C\d{7}")  # jbsim's contact keys (digests are lower-case hex)
MIN_SUBSTRING = 6  # shorter identities ("C1") are matched as a whole segment of the name only


def identities_seen(r: redis.Redis, store: HistoryStore) -> set[str]:
    """The contact keys and emails the run left behind: in the history store (executions and
    subscriptions) and in the Redis records not yet moved there."""
    found: set[str] = set()
    with store.engine.connect() as conn:
        found.update(conn.execute(sa.select(executions.c.contact_key)).scalars())
        for key, email in conn.execute(sa.select(subscriptions.c.contact_key, subscriptions.c.email)):
            found.update((key, email))
    for name in r.scan_iter(match=keys.execution("*", "*"), count=1000):
        found.add(r.hget(name, "contactKey") or "")
    for name in r.scan_iter(match=keys.subscription("*", "*"), count=1000):
        state = json.loads(r.hget(name, "state") or "{}")
        for column in ("SubscriberExternalId", "Email"):
            value = state.get(column)
            if isinstance(value, list) and value:
                found.add(str(value[0]))
    return {value for value in found if value}


def key_name_leaks(names: Iterable[str], identities: set[str]) -> list[str]:
    """Key names holding an email, a sandbox contact key or one of `identities`."""
    long_ones = [value for value in identities if len(value) >= MIN_SUBSTRING]

    def leaks(name: str) -> bool:
        if EMAIL.search(name) or SANDBOX_CONTACT.search(name) or set(name.split(":")) & identities:
            return True
        return any(value in name for value in long_ones)

    return [name for name in names if leaks(name)]


def check_keyspace(r: redis.Redis, store: HistoryStore) -> None:
    """Raises AssertionError naming (a few of) the key names that carry personal data."""
    leaks = key_name_leaks(r.scan_iter(count=1000), identities_seen(r, store))
    assert not leaks, f"{len(leaks)} key name(s) carry personal data, e.g. {sorted(leaks)[:5]}"
