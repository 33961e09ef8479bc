"""GET /t/<tenant>/c/<token>: the redirect of tracked links, what it counts, and every way a token
is refused (404, never a redirect to a URL the token does not bind), fuzzed."""

from __future__ import annotations

import base64
import json
import os
import re
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.delivery.flush import flush_history
from pipeline.infra import keys
from pipeline.journeys import executions, links
from pipeline.journeys.render import render_event
from pipeline.journeys.templates import create_template
from pipeline.stores import performance
from pipeline.stores.ledger import event_id_for, execution_id
from pipeline.upkeep.privacy import forget_contact
from pipeline.vocabulary import OutboxKind, State
from pipeline.web import create_app

T = "default"
BASE = "http://127.0.0.1:8000"  # PUBLIC_BASE_URL's default
TEMPLATE = {
    "title": "Hi {{FirstName}}",
    "description": "Sale: https://brand.example/sale?x=1 and https://brand.example/app",
    "location": "Swipe now https://brand.example/sale?x=1",
    "start": "2026-12-01T09:00:00",
    "timezone": "Europe/London",
    "trackClicks": True,
}
SALE = "https://brand.example/sale?x=1&utm_source=RoktCalendar"
APP = "https://brand.example/app?utm_source=RoktCalendar"
FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "400"))


def send(runtime, instance="i1", template=TEMPLATE, contact="C1", to=State.ACCEPTED):
    """An execution of a tracked template rendered and sent; (execution id, its tracked paths)."""
    template_id = create_template(runtime.redis, T, template)["id"]
    ex = execution_id("act-1", instance)
    args = {"templateId": template_id, "subscriptionId": "s1", "FirstName": "Ava"}
    record = {"contactKey": contact, "eventId": event_id_for(ex), "activityId": "act-1", "args": args}
    runtime.ledger.claim(T, ex, record)
    assert executions.render_step(runtime, T, ex) is True
    runtime.ledger.transition(T, ex, State.ACCEPTED)
    if to == State.CONFIRMED:
        runtime.ledger.transition(T, ex, State.CONFIRMED, (State.ACCEPTED,))
    event = json.loads(runtime.ledger.get(T, ex).fields["event"])
    paths = re.findall(re.escape(BASE) + r"(/t/default/c/[A-Za-z0-9_-]+)", event["description"])
    return ex, paths


@pytest.fixture
def client(runtime):
    return create_app(runtime).test_client()


def figures(runtime):
    return runtime.redis.hgetall(keys.performance_day(T, runtime.reporting_days.today(T)))


def test_a_click_redirects_to_the_bound_target_and_counts(runtime, client):
    ex, (sale, app) = send(runtime)
    unclicked = executions.status_row(runtime.ledger.get(T, ex))["values"]
    assert "Clicks" not in unclicked and "FirstClickedAt" not in unclicked  # a DE without them takes it
    answer = client.get(sale)
    assert answer.status_code == 302 and answer.headers["Location"] == SALE
    assert answer.headers["Cache-Control"] == "no-store"
    assert answer.headers["Referrer-Policy"] == "no-referrer"
    first = runtime.ledger.get(T, ex).fields
    assert first["clicks"] == "1" and first["firstClickedAt"]
    assert client.get(app).headers["Location"] == APP
    assert client.get(sale).headers["Location"] == SALE  # the same link again: another click
    record = runtime.ledger.get(T, ex)
    assert record.fields["clicks"] == "3" and record.fields["firstClickedAt"] == first["firstClickedAt"]
    template = record.template_id
    counted = figures(runtime)
    assert counted["*|clicks"] == "3" and counted["*|clickers"] == "1"
    assert counted["a:act-1|clicks"] == "3" and counted[f"t:{template}|clickers"] == "1"
    found = performance.read_days(runtime.redis, T, [runtime.reporting_days.today(T)], activity="act-1")
    assert found[0].figures["clicks"] == 3 and found[0].figures["clickers"] == 1
    # the status DE's row carries them (the flush rebuilds it from the record)
    row = executions.status_row(record)["values"]
    assert row["Clicks"] == 3 and row["FirstClickedAt"] == first["firstClickedAt"]
    appended = [json.loads(f["p"]) for _id, f in runtime.redis.xrange(keys.outbox(T, OutboxKind.STATUS_ROWS))]
    assert appended[-1] == {
        "keys": {"ContactKey": "C1", "ExecutionId": ex},
        "values": {"Clicks": 3, "FirstClickedAt": first["firstClickedAt"]},
    }
    assert executions.current_status_rows(runtime, T, [appended[-1]])[0]["values"]["Clicks"] == 3


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Purpose": "prefetch"},
        {"Purpose": "prefetch"},
        {"X-Moz": "prefetch"},
        {"User-Agent": "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)"},
        {"User-Agent": "facebookexternalhit/1.1"},
        {"User-Agent": "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"},
    ],
)
def test_prefetches_and_previewers_are_redirected_but_not_counted(runtime, client, headers):
    ex, (sale, _app) = send(runtime)
    answer = client.get(sale, headers=headers)
    assert answer.status_code == 302 and answer.headers["Location"] == SALE
    assert "clicks" not in runtime.ledger.get(T, ex).fields
    assert "*|clicks" not in figures(runtime)


def test_head_is_not_a_click(runtime, client):
    ex, (sale, _app) = send(runtime)
    answer = client.head(sale)
    assert answer.status_code == 302 and answer.headers["Location"] == SALE
    assert "clicks" not in runtime.ledger.get(T, ex).fields


def test_a_browser_user_agent_is_counted(runtime, client):
    ex, (sale, _app) = send(runtime)
    iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148"
    client.get(sale, headers={"User-Agent": iphone})
    assert runtime.ledger.get(T, ex).fields["clicks"] == "1"


def _refused(answer) -> bool:
    return answer.status_code == 404 and "Location" not in answer.headers and b"<html" in answer.data


def _flip(token: str, position: int) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    other = alphabet[(alphabet.index(token[position]) + 1) % 64]
    return token[:position] + other + token[position + 1 :]


def test_tampered_truncated_foreign_and_unknown_tokens_are_404(runtime, client):
    ex, (sale, _app) = send(runtime)
    token = sale.rsplit("/", 1)[1]
    before = runtime.redis.hgetall(keys.execution(T, ex))
    refused = [
        *(f"/t/{T}/c/{_flip(token, i)}" for i in range(len(token))),
        f"/t/{T}/c/{token[:-1]}",
        f"/t/{T}/c/{token[:16]}",
        f"/t/{T}/c/{token}A",
        f"/t/{T}/c/{token}==",
        f"/t/other/c/{token}",  # another tenant's address
        f"/t/{T}/c/" + links.make_token(links.link_key(runtime.redis), T, execution_id("x", "y"), 0, SALE),
        f"/t/{T}/c/" + links.make_token(links.link_key(runtime.redis), T, ex, 7, SALE),  # no 8th link
        f"/t/{T}/c/" + links.make_token(bytes(32), T, ex, 0, SALE),  # another deployment's key
    ]
    for path in refused:
        assert _refused(client.get(path)), path
    assert runtime.redis.hgetall(keys.execution(T, ex)) == before  # nothing counted


def test_a_token_of_a_changed_target_is_404(runtime, client):
    ex, (sale, _app) = send(runtime)
    runtime.redis.hset(keys.execution(T, ex), "links", json.dumps(["https://evil.example/", APP]))
    assert _refused(client.get(sale))


def test_a_correction_keeps_the_tokens_of_the_links_it_keeps(runtime, client):
    ex, (sale, app) = send(runtime)
    record = runtime.ledger.get(T, ex)
    template = json.loads(runtime.redis.hget(keys.templates(T), record.template_id))
    edited = {**template, "description": "New: https://brand.example/app https://brand.example/new"}
    known = record.fields["links"]
    tracker = links.tracker_for(edited, links.link_key(runtime.redis), BASE, T, ex, known=known)
    event = render_event(edited, record.args, record.event_id, links=tracker)
    assert event["description"].startswith(f"New: {BASE}{app} ")  # kept: the same token
    new = "https://brand.example/new?utm_source=RoktCalendar"
    assert tracker.targets == [SALE, APP, new]
    runtime.redis.hset(keys.execution(T, ex), mapping=tracker.stored())
    assert client.get(sale).headers["Location"] == SALE  # dropped from the text, still bound
    fresh = re.findall(re.escape(BASE) + r"(/t/default/c/[A-Za-z0-9_-]+)", event["description"])[1]
    assert client.get(fresh).headers["Location"] == new


def test_an_archived_execution_is_read_from_the_store_counted_and_leaves_again(runtime, client):
    ex, (sale, _app) = send(runtime, to=State.CONFIRMED)
    flush_history(runtime, T, "test", budget_seconds=5, max_wait=0)
    assert runtime.redis.hget(keys.execution(T, ex), "archived") == "1"  # a tombstone
    answer = client.get(sale)
    assert answer.status_code == 302 and answer.headers["Location"] == SALE
    assert runtime.ledger.get(T, ex).fields["clicks"] == "1"  # made whole again, then counted
    flush_history(runtime, T, "test", budget_seconds=5, max_wait=0)
    assert runtime.history.record(T, ex)["clicks"] == "1"  # the store holds the count
    assert runtime.redis.hget(keys.execution(T, ex), "archived") == "1"
    runtime.redis.delete(keys.execution(T, ex))  # past the tombstone's lifetime
    assert client.get(sale).status_code == 302
    assert runtime.ledger.get(T, ex).fields["clicks"] == "2"


def _redis_state(runtime) -> dict[str, object]:
    """Every key of the fake Redis with its value (what a request that writes nothing leaves)."""
    r, state = runtime.redis, {}
    for key in sorted(r.keys("*")):
        kind = r.type(key)
        read = {"hash": r.hgetall, "string": r.get, "set": r.smembers, "zset": lambda k: r.zrange(k, 0, -1)}
        state[key] = (kind, r.xrange(key) if kind == "stream" else read.get(kind, r.type)(key), r.ttl(key))
    return state


def test_a_click_restoring_a_stale_copy_reads_the_store_again(runtime, client, monkeypatch):
    ex, (sale, _app) = send(runtime, to=State.CONFIRMED)
    flush_history(runtime, T, "test", budget_seconds=5, max_wait=0)
    stale = runtime.history.record(T, ex)  # click B reads the archived copy (no click yet)
    assert client.get(sale).status_code == 302  # click A: restored, counted ...
    flush_history(runtime, T, "test", budget_seconds=5, max_wait=0)  # ... written, archived again
    assert runtime.redis.hget(keys.execution(T, ex), "archived") == "1"
    first = runtime.history.record(T, ex)["firstClickedAt"]
    reads = [stale]  # click B goes on with the copy it read before click A
    real = runtime.history.record
    monkeypatch.setattr(runtime.history, "record", lambda *a: reads.pop() if reads else real(*a))

    answer = client.get(sale)
    assert answer.status_code == 302 and answer.headers["Location"] == SALE
    record = runtime.ledger.get(T, ex).fields
    assert record["clicks"] == "2" and record["firstClickedAt"] == first  # click A kept
    counted = figures(runtime)
    assert counted["*|clicks"] == "2" and counted["*|clickers"] == "1"  # one clicker, counted once
    flush_history(runtime, T, "test", budget_seconds=5, max_wait=0)
    assert real(T, ex)["clicks"] == "2" and real(T, ex)["firstClickedAt"] == first


def test_a_head_or_a_previewer_on_an_archived_execution_writes_nothing(runtime, client):
    ex, (sale, _app) = send(runtime, to=State.CONFIRMED)
    flush_history(runtime, T, "test", budget_seconds=5, max_wait=0)
    before = _redis_state(runtime)
    assert before[keys.execution(T, ex)][1]["archived"] == "1"
    for answer in (client.head(sale), client.get(sale, headers={"User-Agent": "facebookexternalhit/1.1"})):
        assert answer.status_code == 302 and answer.headers["Location"] == SALE  # from the store's copy
        assert _redis_state(runtime) == before  # not restored, nothing queued


@pytest.mark.parametrize("archived", [False, True])
def test_a_disabled_tenants_links_are_404_and_write_nothing(runtime, client, archived):
    from dataclasses import replace

    from pipeline.vocabulary import TenantStatus

    _ex, (sale, _app) = send(runtime, to=State.CONFIRMED)
    if archived:
        flush_history(runtime, T, "test", budget_seconds=5, max_wait=0)
    tenant = runtime.registry.get(T)
    assert tenant.status == TenantStatus.ACTIVE and client.head(sale).status_code == 302
    runtime.registry.pinned = {T: replace(tenant, status=TenantStatus.DISABLED)}  # `tenants disable`
    before = _redis_state(runtime)
    head = client.head(sale)
    assert _refused(client.get(sale)) and head.status_code == 404 and "Location" not in head.headers
    assert _redis_state(runtime) == before
    runtime.registry.pinned = {T: replace(tenant, status=TenantStatus.PENDING)}  # settings missing
    assert client.get(sale).status_code == 302


def test_past_retention_a_link_is_dead(runtime, client):
    ex, (sale, _app) = send(runtime)
    runtime.redis.delete(keys.execution(T, ex))  # neither Redis nor the store holds it
    assert _refused(client.get(sale))


def test_forget_erases_clicks_and_kills_the_links(runtime, client):
    ex, (sale, _app) = send(runtime, to=State.CONFIRMED)
    client.get(sale)
    flush_history(runtime, T, "test", budget_seconds=5, max_wait=0)
    assert runtime.history.record(T, ex)["clicks"] == "1"
    forget_contact(runtime, T, "C1", remove_events=False)
    assert runtime.history.record(T, ex) is None and runtime.ledger.get(T, ex) is None
    assert _refused(client.get(sale))
    rows = [json.loads(f["p"]) for _id, f in runtime.redis.xrange(keys.outbox(T, OutboxKind.STATUS_ROWS))]
    assert not [row for row in rows if row["keys"]["ContactKey"] == "C1"]
    assert figures(runtime)["*|clicks"] == "1"  # the day's figures name nobody: they stay


def test_a_store_that_is_away_answers_503_not_a_redirect(runtime, client, monkeypatch):
    import redis

    _ex, (sale, _app) = send(runtime)

    def away(*_args, **_kwargs):
        raise redis.ConnectionError("down")

    monkeypatch.setattr(runtime.clicks, "follow", away)
    answer = client.get(sale)
    assert answer.status_code == 503 and "Location" not in answer.headers and answer.headers["Retry-After"]


# --- fuzz ---------------------------------------------------------------------------------------

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _mutations(token: str) -> st.SearchStrategy[str]:
    raw = base64.urlsafe_b64decode(token)
    flipped = st.tuples(st.integers(0, len(raw) * 8 - 1)).map(
        lambda b: base64.urlsafe_b64encode(
            bytes(x ^ (1 << (b[0] % 8)) if i == b[0] // 8 else x for i, x in enumerate(raw))
        ).decode()
    )
    return st.one_of(
        flipped,
        st.integers(0, len(token) - 1).map(lambda n: token[:n]),  # truncated
        st.text(ALPHABET, min_size=1, max_size=4).map(lambda tail: token + tail),  # extended
        st.text(ALPHABET, min_size=32, max_size=32),  # made up, well-formed
        st.text(min_size=0, max_size=80).filter(lambda s: "/" not in s and "?" not in s and "#" not in s),
        st.binary(min_size=24, max_size=24).map(lambda b: base64.urlsafe_b64encode(b).decode()),
    )


@pytest.fixture
def sent(runtime):
    ex, paths = send(runtime)
    return runtime, create_app(runtime).test_client(), ex, [p.rsplit("/", 1)[1] for p in paths]


@settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    derandomize=os.environ.get("FUZZ_RANDOM") != "1",
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_fuzz_no_token_but_the_real_ones_redirects(sent, data):
    runtime, client, ex, tokens = sent
    bound = {tokens[0]: SALE, tokens[1]: APP}
    token = data.draw(st.one_of(*(_mutations(t) for t in tokens)))
    tenant = data.draw(st.sampled_from([T, T, "other", "Default", "default "]))
    method = data.draw(st.sampled_from(["GET", "HEAD"]))
    before = runtime.redis.hgetall(keys.execution(T, ex))
    keys_before = set(runtime.redis.keys("*"))

    answer = client.open(f"/t/{quote(tenant, safe='')}/c/{quote(token, safe='')}", method=method)
    assert answer.status_code < 500
    if tenant == T and token in bound:  # a mutation that happens to be a real token
        assert answer.status_code == 302 and answer.headers["Location"] == bound[token]
        return
    assert answer.status_code in (404, 405) and "Location" not in answer.headers
    assert runtime.redis.hgetall(keys.execution(T, ex)) == before
    # nothing new but the status outbox's stream (its consumer group, made once before any count)
    assert set(runtime.redis.keys("*")) - keys_before <= {keys.outbox(T, OutboxKind.STATUS_ROWS)}
