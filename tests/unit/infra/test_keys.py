"""Every Redis key name is spelled once, in pipeline/infra/keys.py, and keeps its exact string: the
names are stored data's (a changed one orphans what Redis holds)."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from pipeline.infra import keys

ROOT = Path(__file__).resolve().parents[3]
T = "brand-a"
SALT = "s" * 64
# HMAC-SHA256(SALT, "key-name\0brand-a\0EXT-1")[:40]: the name of contact key EXT-1 under SALT
CONTACT_DIGEST = "ab74805d267af0c368b7f02eb89bfed92574e5bd"
ADDRESS_DIGEST = "22154bc3c886f409acad29ad2be9e6c6068afdde"  # the same of 10.0.0.1
UNKEYED_DIGEST = "03364fe259458d9c00e7e68f60bbac4a07e33a6a"  # sha256("EXT-1")[:40], an older version's

# function, sample arguments, the exact key
KEYS: list[tuple[str, tuple[str | None, ...], str]] = [
    ("tenant_key", (T, "a", "b"), "rsf:brand-a:a:b"),
    ("tenant_prefix", (T,), "rsf:brand-a:"),
    ("personal_digest", (SALT, T, "EXT-1"), CONTACT_DIGEST),
    ("personal_digest", (SALT, T, "10.0.0.1"), ADDRESS_DIGEST),
    ("unkeyed_contact_digest", ("EXT-1",), UNKEYED_DIGEST),
    ("execution", (T, "x-1"), "rsf:brand-a:exec:x-1"),
    ("executions_match", (T,), "rsf:brand-a:exec:*"),
    ("event", (T, "rsf-ev"), "rsf:brand-a:event:rsf-ev"),
    ("open_executions", (T,), "rsf:brand-a:open"),
    ("awaiting", (T,), "rsf:brand-a:awaiting"),
    ("counts", (T,), "rsf:brand-a:counts"),
    ("performance_day", (T, "2026-12-07"), "rsf:brand-a:perf:2026-12-07"),
    ("performance_exported", (T,), "rsf:brand-a:perf-exported"),
    ("activity_names", (T, "act-1"), "rsf:brand-a:activity-names:act-1"),
    ("template_open", (T,), "rsf:brand-a:template-open"),
    ("activity_counts", (T, "act-1"), "rsf:brand-a:activity:act-1:counts"),
    ("template_sent", (T,), "rsf:brand-a:template-sent"),
    ("activity_failures", (T, "act-1"), "rsf:brand-a:activity:act-1:failures"),
    ("activity_missing", (T, "act-1"), "rsf:brand-a:activity:act-1:missing"),
    ("contact_executions", (T, CONTACT_DIGEST), f"rsf:brand-a:kexecs:{CONTACT_DIGEST}"),
    ("unkeyed_contact_executions", (T, UNKEYED_DIGEST), f"rsf:brand-a:contact-execs:{UNKEYED_DIGEST}"),
    ("intake", (T,), "rsf:brand-a:intake"),
    ("last_execute", (T,), "rsf:brand-a:last:execute"),
    ("release_due", (T,), "rsf:brand-a:release-due"),
    ("templates", (T,), "rsf:brand-a:templates"),
    ("install_progress", (T,), "rsf:brand-a:install"),
    ("api_keys", (T,), "rsf:brand-a:apikeys"),
    ("settings_check", (T,), "rsf:brand-a:check"),
    ("webhook_receipt", (T, "ev-1"), "rsf:brand-a:webhook:ev-1"),
    ("webhooks_open", (T,), "rsf:brand-a:webhooks-open"),
    ("webhook_counts", (T,), "rsf:brand-a:webhook-counts"),
    ("webhook_types", (T,), "rsf:brand-a:webhook-types"),
    ("last_webhook", (T,), "rsf:brand-a:last:webhook"),
    ("webhook_applied", (T, "hook-1"), "rsf:brand-a:webhook-applied:hook-1"),
    ("subscription", (T, "sub-1"), "rsf:brand-a:sub:sub-1"),
    ("contact_subscriptions", (T, CONTACT_DIGEST), "rsf:brand-a:ksubs:ab74"),
    ("contact_subscriptions_field", (CONTACT_DIGEST,), CONTACT_DIGEST[4:20]),
    ("unkeyed_contact_subscriptions", (T, UNKEYED_DIGEST), "rsf:brand-a:csubs:0336"),
    ("unkeyed_contact_subscriptions_match", (T,), "rsf:brand-a:csubs:*"),
    ("legacy_contact_subscriptions", (T, "EXT-1"), "rsf:brand-a:contact-subs:EXT-1"),
    ("backfill_checkpoint", (T, "abc"), "rsf:brand-a:backfill:abc"),
    ("event_jobs", (T,), "rsf:brand-a:event-jobs"),
    ("event_jobs_running", (T,), "rsf:brand-a:event-jobs-running"),
    ("event_job", (T, "job-1"), "rsf:brand-a:event-job:job-1"),
    ("event_job_planning", (T, "job-1"), "rsf:brand-a:event-job:job-1:planning"),
    ("event_job_items", (T, "job-1"), "rsf:brand-a:event-job:job-1:items"),
    ("event_job_outcomes", (T, "job-1"), "rsf:brand-a:event-job:job-1:outcomes"),
    ("event_job_chunks_done", (T, "job-1"), "rsf:brand-a:event-job:job-1:chunks"),
    ("event_job_lease", (T, "job-1", 50), "rsf:brand-a:event-job:job-1:lease:50"),
    ("event_job_notes", (T, "job-1"), "rsf:brand-a:event-job:job-1:notes"),
    ("event_job_totals", (T,), "rsf:brand-a:event-job-totals"),
    ("archived_templates", (T,), "rsf:brand-a:templates-archived"),
    ("journey_stops", (T, "act-1"), "rsf:brand-a:journey-stops:act-1"),
    ("dead_letters", (T,), "rsf:brand-a:dlq"),
    ("dead_letters_by_time", (T,), "rsf:brand-a:dlq-by-time"),
    ("dead_letters_replayed", (T,), "rsf:brand-a:dlq-replayed"),
    ("dead_letters_replayed_cursor", (T,), "rsf:brand-a:dlq-replayed-cursor"),
    ("store_moves", (T,), "rsf:brand-a:store-moves"),
    ("dead_letters_auto_retried", (T,), "rsf:brand-a:dlq-auto-retried"),
    ("outbox", (T, "status_rows"), "rsf:brand-a:outbox:status_rows"),
    ("flush_slot", (T, "releases"), "rsf:brand-a:flush-scheduled:releases"),
    ("ratelimit", (T, "rokt"), "rsf:brand-a:ratelimit:rokt"),
    ("cooldown", (T, "rokt"), "rsf:brand-a:cooldown:rokt"),
    ("ratelimit_line", (T, "rokt"), "rsf:brand-a:ratelimit-line:rokt"),
    ("ratelimit_reserved", (T, "rokt"), "rsf:brand-a:ratelimit-reserved:rokt"),
    ("ratelimit_deferred", (T, "rokt"), "rsf:brand-a:ratelimit-deferred:rokt"),
    ("ratelimit_late", (T, "rokt"), "rsf:brand-a:ratelimit-late:rokt"),
    ("token", (T, "sfmc"), "rsf:brand-a:token:sfmc"),
    ("token_lock", (T, "sfmc"), "rsf:brand-a:token:sfmc:lock"),
    ("credentials_rejected", (T, "sfmc"), "rsf:brand-a:credentials:sfmc:rejected"),
    ("matches_parked", (T,), "rsf:brand-a:matches-parked"),
    ("credentials_hold", (T, "sfmc"), "rsf:brand-a:credentials:sfmc:hold"),
    ("calls", (T,), "rsf:brand-a:calls"),
    ("durability_waits", (T,), "rsf:brand-a:durability:waits"),
    ("auth_failures", (T,), "rsf:brand-a:auth-failures"),
    ("auth_failure_window", (T, "execute", 5898240), "rsf:brand-a:authfail:execute:5898240"),
    ("auth_failure_window", (None, "webhook", 5898240), "rsf:_authfail:webhook:5898240"),
    ("erasures", (T,), "rsf:brand-a:erasures"),
    ("privacy_salt", (), "rsf:_privacy:salt"),
    ("registry_tenants", (), "rsf:_registry:tenants"),
    ("registry_refresh_tokens", (), "rsf:_registry:refresh"),
    ("registry_eid_index", (), "rsf:_registry:eid"),
    ("registry_version", (), "rsf:_registry:version"),
    ("redbeat_prefix", (), "rsf:redbeat"),
    ("heartbeat", ("worker", "w1@host"), "rsf:_ops:heartbeat:worker:w1@host"),
    ("heartbeats_seen", ("beat",), "rsf:_ops:heartbeats:beat"),
    ("app_session", ("ab12",), "rsf:_app:session:ab12"),
    ("login_states", (), "rsf:_app:states"),
    ("login_states_by_address", (), "rsf:_app:states-by-address"),
]


@pytest.mark.parametrize(("name", "args", "expected"), KEYS, ids=[f"{n}{a}" for n, a, _ in KEYS])
def test_each_key_keeps_its_exact_string(name, args, expected):
    assert getattr(keys, name)(*args) == expected


def test_every_key_function_is_pinned_and_says_what_it_holds():
    functions = {
        name
        for name, value in vars(keys).items()
        if inspect.isfunction(value) and value.__module__ == keys.__name__ and not name.startswith("_")
    }
    assert functions == {name for name, _, _ in KEYS}
    for name in functions:
        assert (getattr(keys, name).__doc__ or "").strip(), f"keys.{name} has no docstring"


def test_the_outbox_kinds_name_their_streams_as_before():
    from pipeline.vocabulary import OutboxKind

    for kind in OutboxKind:
        assert keys.outbox(T, kind) == f"rsf:brand-a:outbox:{kind.value}"
        assert keys.flush_slot(T, kind) == f"rsf:brand-a:flush-scheduled:{kind.value}"


KEYS_MODULE = ROOT / "pipeline" / "infra" / "keys.py"


def _product_sources() -> list[Path]:
    paths = [*sorted((ROOT / "pipeline").rglob("*.py")), *sorted((ROOT / "tasks").rglob("*.py"))]
    assert KEYS_MODULE in paths and len(paths) > 50, "the scan must see the product's modules"
    return [p for p in paths if p != KEYS_MODULE]


def _spelled_keys(source: str) -> list[tuple[int, str]]:
    """(line, text) of each string literal starting `rsf:`, f-strings' literal parts included."""
    return [
        (node.lineno, node.value)
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("rsf:")
    ]


def test_no_key_is_spelled_outside_the_keys_module():
    """No `tenant_key(` call and no string literal starting `rsf:` in pipeline/ or tasks/."""
    found = []
    for path in _product_sources():
        text = path.read_text()
        where = path.relative_to(ROOT)
        if "tenant_key(" in text:
            found.append(f"{where}: tenant_key(")
        found += [f"{where}:{line}: {value!r}" for line, value in _spelled_keys(text)]
    assert not found, "Redis keys spelled outside pipeline/infra/keys.py:\n" + "\n".join(found)


def test_the_check_sees_a_spelled_key_plain_or_formatted():
    sample = 'y = f"rsf:{t}:dlq"\nz = "rsf:_ops:x"\n'
    assert sorted(value for _, value in _spelled_keys(sample)) == ["rsf:", "rsf:_ops:x"]


# Functions whose argument is personal data (a contact key, an email, a client address), and the
# one that names it: the written names must come from `personal_digest`, never hold the value.
PERSONAL = ["EXT-1", "jane.doe@example.com", "10.0.0.1", "2001:db8::1"]


def test_the_digest_depends_on_the_deployments_salt_and_the_tenant():
    """Two deployments (two salts) name one person differently, and so do two tenants: a name seen
    in one Redis says nothing about another; one salt names a person alike every time."""
    other = "t" * 64
    for value in PERSONAL:
        ours = keys.personal_digest(SALT, T, value)
        assert ours == keys.personal_digest(SALT, T, value)
        assert ours != keys.personal_digest(other, T, value)
        assert ours != keys.personal_digest(SALT, "brand-b", value)
        assert ours != keys.unkeyed_contact_digest(value)  # no dictionary of sha256s finds it
    assert len({keys.personal_digest(SALT, T, value) for value in PERSONAL}) == len(PERSONAL)


def _names_of(value: str) -> list[str]:
    """Every name a key function writes for this person's data (as the product builds them)."""
    digest = keys.personal_digest(SALT, T, value)
    return [
        digest,
        keys.contact_executions(T, digest),
        keys.contact_subscriptions(T, digest),
        keys.contact_subscriptions_field(digest),
    ]


@pytest.mark.parametrize("value", PERSONAL)
def test_no_written_name_holds_the_value_it_names(value):
    lowered = value.lower()
    for name in _names_of(value):
        assert lowered not in name.lower(), name
        for part in (p for p in lowered.replace("@", ".").replace(":", ".").split(".") if len(p) > 2):
            assert part not in name.lower(), (part, name)


def test_personal_data_reaches_key_names_only_through_the_digest():
    """The product passes no contact key, email or address to a writing key function: each call
    of these functions in pipeline/ and tasks/ gives them a digest or a pattern, found by name."""
    written = {
        "contact_executions",
        "contact_subscriptions",
        "contact_subscriptions_field",
    }
    found = []
    for path in _product_sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            if node.func.attr not in written:
                continue
            text = ast.unparse(node.args[-1]).lower()
            if not any(word in text for word in ("digest", '"*"', "'*'", '""', "''", "<")):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
    assert not found, "key functions given something other than a digest:\n" + "\n".join(found)
