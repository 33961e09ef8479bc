"""Every Redis key the service writes, named in one place: one function per key, saying what it
holds and its Redis type.

Tenant keys are `rsf:<tenant>:<part>:...` (`tenant_key`), so nothing of one tenant can collide
with another's; the deployment's own keys are `rsf:_<area>:...` (a tenant name never starts with
`_`). The strings are stored data's names: changing one orphans what Redis holds
(tests/unit/infra/test_keys.py pins each). The ledger's Lua scripts build an execution's `event:` and
`activity:` keys from `tenant_prefix`, as `event` and `activity_counts` / `activity_failures` do.
RedBeat names its own keys under `redbeat_prefix()`; kombu's queue keys are the broker's.
"""

from __future__ import annotations

import hashlib
import hmac

PREFIX = "rsf"
_OPS = f"{PREFIX}:_ops"
_REGISTRY = f"{PREFIX}:_registry"
_APP = f"{PREFIX}:_app"


def tenant_key(tenant: str, *parts: str) -> str:
    """`rsf:<tenant>:<part>:...`: nothing of one tenant can collide with another's."""
    return ":".join((PREFIX, tenant, *parts))


def tenant_prefix(tenant: str) -> str:
    """`rsf:<tenant>:`: what every key of the tenant starts with (the ledger's scripts build from it)."""
    return tenant_key(tenant, "")


def personal_digest(salt: str, tenant: str, value: str) -> str:
    """How a key names personal data (a contact key, an email, a client address): an HMAC-SHA256
    under the deployment's salt (`pipeline/infra/salt.py`), so that a key name read from SCAN, a
    slow log or a keyspace notification can neither hold the value nor be reversed by hashing a
    dictionary of likely values. The tenant is in the message: one person's names differ between
    tenants; `key-name` keeps them apart from every other use of the salt (the erasure audit)."""
    message = f"key-name\0{tenant}\0{value}".encode()
    return hmac.new(salt.encode(), message, hashlib.sha256).hexdigest()[:40]


def unkeyed_contact_digest(contact_key: str) -> str:
    """The plain sha256 an older version named the contact indexes by (`unkeyed_contact_executions`,
    `unkeyed_contact_subscriptions`): only to read and delete those names, never to write one."""
    return hashlib.sha256(contact_key.encode()).hexdigest()[:40]


# --- executions (pipeline/stores/ledger.py, pipeline/journeys/executions.py and intake.py) ---


def execution(tenant: str, execution_id: str) -> str:
    """Hash: one execution's record (ledger); also its member name in the open and awaiting sets."""
    return tenant_key(tenant, "exec", execution_id)


def executions_match(tenant: str) -> str:
    """SCAN MATCH pattern of every execution record of the tenant (`execution`'s keys)."""
    return execution(tenant, "*")


def event(tenant: str, event_id: str) -> str:
    """String: the execution that sent this Rokt eventId (the ledger's scripts build it too)."""
    return tenant_key(tenant, "event", event_id)


def open_executions(tenant: str) -> str:
    """Sorted set: executions not yet finished (execution keys), scored by claim time."""
    return tenant_key(tenant, "open")


def awaiting(tenant: str) -> str:
    """Sorted set: executions accepted by Rokt and not yet confirmed, scored by acceptance time."""
    return tenant_key(tenant, "awaiting")


def counts(tenant: str) -> str:
    """Hash: the tenant's executions by outcome (received, replayed, each state)."""
    return tenant_key(tenant, "counts")


def performance_day(tenant: str, day: str) -> str:
    """Hash: one day's figures in the tenant's reporting time zone, `<scope>|<figure>` -> count
    (pipeline/stores/performance.py); counted by the ledger's scripts, the subscription merge and
    the click script; kept PERFORMANCE_DAYS."""
    return tenant_key(tenant, "perf", day)


def performance_exported(tenant: str) -> str:
    """String: the last tenant-local day (YYYY-MM-DD) whose performance rows went to SFMC after
    it ended (pipeline/delivery/performance_rows.py): the days after it are written again."""
    return tenant_key(tenant, "perf-exported")


def activity_names(tenant: str, activity_id: str) -> str:
    """String: JSON {"journey", "activity", "at"}: the names Journey Builder gives one activity
    and its journey (cell-safe, capped; empty when SFMC did not say), kept ACTIVITY_NAMES_DAYS."""
    return tenant_key(tenant, "activity-names", activity_id)


def template_open(tenant: str) -> str:
    """Hash: template id -> executions of that template still queued (kept by the scripts)."""
    return tenant_key(tenant, "template-open")


def activity_counts(tenant: str, activity_id: str) -> str:
    """Hash: one activity's executions by outcome (the ledger's scripts build it too)."""
    return tenant_key(tenant, "activity", activity_id, "counts")


def template_sent(tenant: str) -> str:
    """Hash: template id -> events of it Rokt accepted, ever (the transition script counts each
    move to `accepted`): what an event job compares with what the ledger still holds."""
    return tenant_key(tenant, "template-sent")


def activity_failures(tenant: str, activity_id: str) -> str:
    """Sorted set: one activity's failure reasons by count (the ledger's scripts build it too)."""
    return tenant_key(tenant, "activity", activity_id, "failures")


def activity_missing(tenant: str, activity_id: str) -> str:
    """Sorted set: one activity's missing-field reasons by count, apart from its failures so that
    neither hides the other (the ledger's scripts build it too)."""
    return tenant_key(tenant, "activity", activity_id, "missing")


def contact_executions(tenant: str, digest: str) -> str:
    """Set: the execution ids claimed for one contact, named by `personal_digest` of its key."""
    return tenant_key(tenant, "kexecs", digest)


def unkeyed_contact_executions(tenant: str, digest: str) -> str:
    """Set: the same as an older version named it (`unkeyed_contact_digest`); read and deleted
    (forget, the `contact-executions` mover), never written; it expires with the ledger's TTL."""
    return tenant_key(tenant, "contact-execs", digest)


def intake(tenant: str) -> str:
    """Stream: the tenant's claimed executions, appended by the claim and published by the pump."""
    return tenant_key(tenant, "intake")


def last_execute(tenant: str) -> str:
    """String: when Journey Builder last called execute for the tenant (epoch seconds)."""
    return tenant_key(tenant, "last", "execute")


def release_due(tenant: str) -> str:
    """Sorted set: executions accepted with releaseOn=confirmed, scored by release deadline."""
    return tenant_key(tenant, "release-due")


# --- templates, data extensions, API keys, App Settings ----------------------------------------


def templates(tenant: str) -> str:
    """Hash: template id -> the template as JSON."""
    return tenant_key(tenant, "templates")


def install_progress(tenant: str) -> str:
    """String: the data extensions' install progress (JSON)."""
    return tenant_key(tenant, "install")


def api_keys(tenant: str) -> str:
    """Hash: API key id -> JSON record holding the key's sha256 (never the key)."""
    return tenant_key(tenant, "apikeys")


def settings_check(tenant: str) -> str:
    """String: App Settings' latest Test result (JSON)."""
    return tenant_key(tenant, "check")


# --- webhooks and subscriptions ----------------------------------------------------------------


def webhook_receipt(tenant: str, event_id: str) -> str:
    """String: one webhook's stored envelope (JSON), then a dedupe marker, until it expires."""
    return tenant_key(tenant, "webhook", event_id)


def webhooks_open(tenant: str) -> str:
    """Sorted set: eventIds claimed and not yet processed, scored by receipt time."""
    return tenant_key(tenant, "webhooks-open")


def webhook_counts(tenant: str) -> str:
    """Hash: webhooks received, duplicates and released (counters only grow)."""
    return tenant_key(tenant, "webhook-counts")


def webhook_types(tenant: str) -> str:
    """Hash: eventType -> webhooks received of that type."""
    return tenant_key(tenant, "webhook-types")


def last_webhook(tenant: str) -> str:
    """String: when Rokt last delivered a webhook for the tenant (epoch seconds)."""
    return tenant_key(tenant, "last", "webhook")


def webhook_applied(tenant: str, webhook_id: str) -> str:
    """String: marker that one webhook was applied to its subscription (WEBHOOK_DEDUPE_MINUTES)."""
    return tenant_key(tenant, "webhook-applied", webhook_id)


def subscription(tenant: str, subscription_id: str) -> str:
    """Hash: one calendar subscription's working copy (merged state, contact match, version)
    while an event is being merged and until the history store holds that version."""
    return tenant_key(tenant, "sub", subscription_id)


def contact_subscriptions(tenant: str, digest: str) -> str:
    """Hash: the live calendar subscription ids of the contacts whose `personal_digest` starts the
    same (65,536 buckets a tenant, each small enough for Redis's compact encoding), field
    `contact_subscriptions_field(digest)`, value the ids space-separated (render's lookup for
    executes without a subscriptionId)."""
    return tenant_key(tenant, "ksubs", digest[:4])


def unkeyed_contact_subscriptions(tenant: str, digest: str) -> str:
    """Hash: the same index as an older version named it (`unkeyed_contact_digest`, same field);
    read by render and emptied (by the `contact-subscriptions` mover and every change of an entry),
    never added to."""
    return tenant_key(tenant, "csubs", digest[:4])


def unkeyed_contact_subscriptions_match(tenant: str) -> str:
    """SCAN MATCH pattern of every `unkeyed_contact_subscriptions` bucket of the tenant."""
    return unkeyed_contact_subscriptions(tenant, "*")


def contact_subscriptions_field(digest: str) -> str:
    """One contact's field in its `contact_subscriptions` bucket: 80 bits of the digest with the
    bucket's 16, where two contacts never meet in practice."""
    return digest[4:20]


def legacy_contact_subscriptions(tenant: str, contact_key: str) -> str:
    """Set: the same index as it was, named by the plain contact key; read (until
    `move_subscriptions_to_store` has run) and deleted, never written."""
    return tenant_key(tenant, "contact-subs", contact_key)


def backfill_checkpoint(tenant: str, fingerprint: str) -> str:
    """String: records of one backfill file done so far (its resume point)."""
    return tenant_key(tenant, "backfill", fingerprint)


# --- event jobs: corrections, cancels and withdrawals of sent events (journeys/event_jobs.py) ---


def event_jobs(tenant: str) -> str:
    """Sorted set: event job id -> when it started (epoch seconds), for `events jobs|history`."""
    return tenant_key(tenant, "event-jobs")


def event_jobs_running(tenant: str) -> str:
    """Sorted set: running event job id -> when it last made progress; the reconciler re-kicks
    a job idle too long (its task lost with a worker or a broker)."""
    return tenant_key(tenant, "event-jobs-running")


def event_job(tenant: str, job_id: str) -> str:
    """Hash: one event job: what it does, who started it and when, its state and its counts."""
    return tenant_key(tenant, "event-job", job_id)


def event_job_planning(tenant: str, job_id: str) -> str:
    """String: held (2 minutes at most) while one step plans the job, so two never plan at once."""
    return tenant_key(tenant, "event-job", job_id, "planning")


def event_job_items(tenant: str, job_id: str) -> str:
    """List: the execution ids the job works through, in chunks (deleted when it ends)."""
    return tenant_key(tenant, "event-job", job_id, "items")


def event_job_outcomes(tenant: str, job_id: str) -> str:
    """Hash: execution id -> the job's outcome for it (each counted once; deleted when it ends)."""
    return tenant_key(tenant, "event-job", job_id, "outcomes")


def event_job_chunks_done(tenant: str, job_id: str) -> str:
    """Set: the job's chunks done (their first item's index; deleted when it ends)."""
    return tenant_key(tenant, "event-job", job_id, "chunks")


def event_job_lease(tenant: str, job_id: str, start: int) -> str:
    """String: held by the one run of a job's chunk (from its first item's index) at a time,
    renewed item by item; a run lost with its worker lets it lapse within one Rokt call's time."""
    return tenant_key(tenant, "event-job", job_id, "lease", str(start))


def event_job_notes(tenant: str, job_id: str) -> str:
    """Hash: execution id -> why the job kept its old event or failed it (kept with the job)."""
    return tenant_key(tenant, "event-job", job_id, "notes")


def event_job_totals(tenant: str) -> str:
    """Hash: `<kind>:<outcome>` -> executions every event job of the tenant ended so (the exporter's)."""
    return tenant_key(tenant, "event-job-totals")


def journey_stops(tenant: str, activity_id: str) -> str:
    """Hash: `<journey version 1's id>:<version>` -> `pending` or `done`: the stops of this
    activity's journey waiting for (or past) SFMC's confirmation, at most a few per activity and
    for a day (only for activities the ledger knows: the unauthenticated stop call writes
    nothing else)."""
    return tenant_key(tenant, "journey-stops", activity_id)


def archived_templates(tenant: str) -> str:
    """Set: ids of the templates archived (their events cancelled): executions of them are not sent."""
    return tenant_key(tenant, "templates-archived")


# --- dead letters ------------------------------------------------------------------------------


def dead_letters(tenant: str) -> str:
    """Hash: the dead-letter store, item id -> JSON record."""
    return tenant_key(tenant, "dlq")


def dead_letters_by_time(tenant: str) -> str:
    """Sorted set: dead-letter item id -> failedAt (epoch seconds), what retention trims by."""
    return tenant_key(tenant, "dlq-by-time")


def dead_letters_replayed(tenant: str) -> str:
    """Hash: replayed dead letters kept for audit, item id -> JSON record with replayedAt."""
    return tenant_key(tenant, "dlq-replayed")


def dead_letters_replayed_cursor(tenant: str) -> str:
    """String: where the sweep of replayed dead letters resumes (an HSCAN cursor)."""
    return tenant_key(tenant, "dlq-replayed-cursor")


def dead_letters_auto_retried(tenant: str) -> str:
    """Set: ids of the dead letters the reconciler retried once automatically."""
    return tenant_key(tenant, "dlq-auto-retried")


# --- delivery: outboxes, flushes, rate limits, tokens, vendor calls ----------------------------


def outbox(tenant: str, kind: str) -> str:
    """Stream: rows (or releases) of one kind waiting for their flush to SFMC."""
    return tenant_key(tenant, "outbox", kind)


def flush_slot(tenant: str, kind: str) -> str:
    """String with a TTL: one kind's flush is scheduled until it expires."""
    return tenant_key(tenant, "flush-scheduled", kind)


def ratelimit(tenant: str, vendor: str) -> str:
    """String: the vendor limiter's theoretical arrival time (epoch seconds)."""
    return tenant_key(tenant, "ratelimit", vendor)


def cooldown(tenant: str, vendor: str) -> str:
    """String with a TTL: the vendor is paused (throttled) until it expires."""
    return tenant_key(tenant, "cooldown", vendor)


def ratelimit_line(tenant: str, vendor: str) -> str:
    """String: the waiting line of deferred calls of the vendor: the next free slot (epoch seconds)."""
    return tenant_key(tenant, "ratelimit-line", vendor)


def ratelimit_reserved(tenant: str, vendor: str) -> str:
    """String: the share of the account's rate an event job holds for itself while creates wait
    in line (set by the job every call, for seconds: gone when the job stops or creates stop
    waiting); the creates' slots are spaced for the rest of the rate meanwhile."""
    return tenant_key(tenant, "ratelimit-reserved", vendor)


def ratelimit_deferred(tenant: str, vendor: str) -> str:
    """String: calls of the vendor deferred by its limiter (a counter)."""
    return tenant_key(tenant, "ratelimit-deferred", vendor)


def ratelimit_late(tenant: str, vendor: str) -> str:
    """String: deferred calls of the vendor woken too late to send (a counter)."""
    return tenant_key(tenant, "ratelimit-late", vendor)


def token(tenant: str, vendor: str) -> str:
    """String: the vendor's cached access token (sealed JSON record)."""
    return tenant_key(tenant, "token", vendor)


def token_lock(tenant: str, vendor: str) -> str:
    """String with a TTL: the lock of one process fetching the vendor's token."""
    return f"{token(tenant, vendor)}:lock"


def credentials_rejected(tenant: str, vendor: str) -> str:
    """String (JSON `{"reason", "since"}`): the vendor refused the tenant's credentials for a token
    (pipeline/clients/tokens.py, `Refusals`); deleted by the next token it grants, or when the
    credentials change (App Settings' Save, a sign-in's new refresh token)."""
    return tenant_key(tenant, "credentials", vendor, "rejected")


def matches_parked(tenant: str) -> str:
    """Hash: calendar subscription id -> its attributes (JSON), for subscriptions merged while SFMC
    refused the tenant's credentials: their contact match waits for a token (the reconciler's
    `retry_parked_matches`); personal data, erased by `forget`."""
    return tenant_key(tenant, "matches-parked")


def credentials_hold(tenant: str, vendor: str) -> str:
    """String with a TTL (JSON `{"reason", "credentials"}`, the latter a digest): while it lives, no
    token is asked for with the credentials the vendor refused (`Refusals`)."""
    return tenant_key(tenant, "credentials", vendor, "hold")


def calls(tenant: str) -> str:
    """Hash: vendor call counters, `<vendor>:<status class>` and `<vendor>:token` -> count."""
    return tenant_key(tenant, "calls")


def durability_waits(tenant: str) -> str:
    """String: WAITs for replicas made for the tenant (a counter; its INCR carries the offset)."""
    return tenant_key(tenant, "durability", "waits")


# --- authentication failures -------------------------------------------------------------------


def auth_failures(tenant: str) -> str:
    """Hash: route -> failed authentications (`<route>:limited`: answered 429)."""
    return tenant_key(tenant, "auth-failures")


def auth_failure_window(tenant: str | None, route: str, window: int) -> str:
    """Hash with a TTL: failed authentications on a route in one fixed window (its number since
    the epoch; None: every unknown tenant together), field the address's `personal_digest` (16 hex;
    a client address is personal data), at most AUTH_FAILURE_ADDRESSES_MAX fields."""
    if tenant is None:
        return f"{PREFIX}:_authfail:{route}:{window}"
    return tenant_key(tenant, "authfail", route, str(window))


# --- upkeep ------------------------------------------------------------------------------------


def store_moves(tenant: str) -> str:
    """Hash: mover name -> where its walk of the tenant's Redis records resumes (a SCAN cursor),
    or `done` (pipeline/upkeep/store_moves.py: records an older version left whole in Redis)."""
    return tenant_key(tenant, "store-moves")


# --- privacy -----------------------------------------------------------------------------------


def erasures(tenant: str) -> str:
    """Sorted set: the erasure audit, JSON records scored by time (no contact data)."""
    return tenant_key(tenant, "erasures")


def privacy_salt() -> str:
    """String: the deployment's salt for subject hashes and `personal_digest` (created on first
    use, never changed: every name it keys depends on it)."""
    return f"{PREFIX}:_privacy:salt"


# --- the deployment's own keys: registry, heartbeats, the app's sessions -----------------------


def registry_tenants() -> str:
    """Hash: tenant name -> JSON record (secrets sealed)."""
    return f"{_REGISTRY}:tenants"


def registry_refresh_tokens() -> str:
    """Hash: tenant name -> sealed offline refresh token."""
    return f"{_REGISTRY}:refresh"


def registry_eid_index() -> str:
    """Hash: enterprise id -> tenant name."""
    return f"{_REGISTRY}:eid"


def registry_version() -> str:
    """String: the registry's version, incremented by every change."""
    return f"{_REGISTRY}:version"


def redbeat_prefix() -> str:
    """Prefix (celeryconfig's redbeat_key_prefix): RedBeat's schedule, entries and lock under it."""
    return f"{PREFIX}:redbeat"


def heartbeat(kind: str, name: str) -> str:
    """String with a TTL: when one process (worker, beat, exporter) last beat (epoch seconds)."""
    return f"{_OPS}:heartbeat:{kind}:{name}"


def heartbeats_seen(kind: str) -> str:
    """Sorted set: process name -> epoch of its last beat, for one kind."""
    return f"{_OPS}:heartbeats:{kind}"


def app_session(session_hash: str) -> str:
    """String with a TTL: one App Settings session (JSON), named by the sha256 of its id."""
    return f"{_APP}:session:{session_hash}"


def login_states() -> str:
    """Sorted set: the sign-ins started and not yet finished, member `<address digest>:<state
    digest>`, scored by expiry (epoch seconds); capped in all (pipeline/web/signin_states.py)."""
    return f"{_APP}:states"


def login_states_by_address() -> str:
    """Sorted set: the same members as `login_states`, all scored 0 so that ZLEXCOUNT counts one
    address's (its members start with its digest); capped per address."""
    return f"{_APP}:states-by-address"
