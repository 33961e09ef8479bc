"""Erasure in batches (`forget_contacts`, `rokt-sfmc forget --from`): a batch removes exactly what
forgetting its people one by one removes, walks the keyspace once however many people it holds,
and matches a record against every person as the one-person matcher did."""

from __future__ import annotations

import json
from typing import Any

import fakeredis
import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline import cli
from pipeline.infra import keys
from pipeline.stores.deadletters import record_dead_letter
from pipeline.stores.history import dead_letter_row
from pipeline.subscriptions.webhooks import claim_webhook
from pipeline.tenancy.handles import Runtime
from pipeline.upkeep import privacy
from pipeline.vocabulary import Stage
from tests.unit.samples import RECEIPT_TTL
from tests.unit.upkeep.test_privacy import FakeSfmc, execute, seed, subscribe, to_store

T = "default"
PEOPLE: list[tuple[str, str | None]] = [
    ("EXT-AAAA", "Alice@Example.com"),
    ("EXT-BBBB", None),
    ("EXT-CCCC", "carol@example.com"),
    ("EXT-DDDD", "dave@example.com"),
    ("EXT-NONE", "nobody@example.com"),  # holds nothing: audited with zero counts
    ("EXT-AAAA", None),  # asked twice: the first erases, the second finds nothing left
]


@pytest.fixture
def sfmc(runtime, monkeypatch):
    fake = FakeSfmc(set())
    monkeypatch.setattr(runtime, "sfmc", lambda name: fake)
    return fake


def seed_all(runtime, sfmc) -> dict[str, Any]:
    """test_privacy's two people (A: subscription, failed execution, dead letters, an unprocessed
    webhook naming only A's Rokt event, a replayed letter; B: subscription, accepted execution),
    and records found only on the way: C's execution claimed before the contact index (the
    SCAN finds it) and a dead letter naming only its execution id; D's subscription only the
    store holds, and an unprocessed webhook naming only its subscription id; a replayed letter in
    the store naming only D's email; a letter naming both A and B (it goes with the first); and
    F, who is not forgotten."""
    ids = seed(runtime, sfmc)
    r = runtime.redis
    ids["c"] = execute(runtime, 3, "EXT-CCCC", "carol@example.com")
    r.delete(runtime.ledger.contact_index(T, "EXT-CCCC"))  # as claimed by an older version
    record_dead_letter(
        r, T, "render:older", stage=Stage.RENDER, error_class="permanent", reason="r", attempts=1,
        payload={"execution": ids["c"]},
    )  # fmt: skip
    subscribe(runtime, 4, "EXT-DDDD", "dave@example.com")
    subscribe(runtime, 6, "EXT-FFFF", "fay@example.com")
    ids["f"] = execute(runtime, 6, "EXT-FFFF", "fay@example.com")
    to_store(runtime)
    changed = {
        "eventId": "hook-changed-4",
        "eventType": "SubscriptionChanged",
        "eventDetails": {"subscription": {"calendarSubscriptionId": "sub-4"}},
    }
    assert claim_webhook(r, T, changed, ttl_seconds=RECEIPT_TTL)
    letter = {
        "id": "webhook:old-dave",
        "stage": "webhook",
        "errorClass": "permanent",
        "failedAt": "2026-01-01T00:00:00.000+00:00",
        "replayedAt": "2026-01-02T00:00:00.000+00:00",
        "payload": {"Email": "DAVE@example.com"},
    }
    runtime.history.upsert_dead_letters([dead_letter_row(T, letter)])
    record_dead_letter(
        r, T, "report:both", stage=Stage.RENDER, error_class="permanent", reason="r", attempts=1,
        payload={"to": ["alice@example.com", "EXT-BBBB"]},
    )  # fmt: skip
    return ids


def clone(runtime) -> Runtime:
    """Another runtime holding the same data: every Redis key (with its TTL, its stream groups
    and pending entries) and the history store's database."""
    source = fakeredis.FakeRedis(connection_pool=runtime.redis.connection_pool, decode_responses=False)
    target = fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)
    raw = fakeredis.FakeRedis(connection_pool=target.connection_pool, decode_responses=False)
    for key in source.scan_iter(count=1000):
        raw.restore(key, max(int(source.pttl(key)), 0), source.dump(key))
    twin = Runtime(runtime.settings, target)
    runtime.history.engine.raw_connection().driver_connection.backup(
        twin.history.engine.raw_connection().driver_connection
    )
    return twin


def redis_state(r) -> dict[str, str]:
    """Every key with its whole value, but the erasure audit (it holds the time of each erasure)."""
    state = {}
    for key in sorted(r.scan_iter(count=1000)):
        if key == keys.erasures(T):
            continue
        value: Any = {
            "string": r.get,
            "hash": r.hgetall,
            "set": lambda name: sorted(r.smembers(name)),
            "zset": lambda name: r.zrange(name, 0, -1, withscores=True),
            "list": lambda name: r.lrange(name, 0, -1),
            "stream": lambda name: [r.xrange(name), r.xinfo_groups(name)],
        }[r.type(key)](key)
        state[key] = json.dumps(value, sort_keys=True)
    return state


def store_state(runtime) -> dict[str, list[Any]]:
    """Every row of every table of the history store."""
    with runtime.history.engine.connect() as connection:
        tables = sa.inspect(connection).get_table_names()
        return {
            name: sorted(map(repr, connection.execute(sa.text(f'SELECT * FROM "{name}"')).all()))
            for name in tables
        }


def audit(runtime) -> list[str]:
    """The erasure audit without the times (a batch's entries share one: ordered by text)."""
    return sorted(
        json.dumps({k: v for k, v in e.items() if k != "at"}) for e in privacy.erasures(runtime.redis, T)
    )


@pytest.mark.parametrize("scan", [True, False])
def test_a_batch_removes_exactly_what_forgetting_each_person_in_turn_removes(runtime, sfmc, scan):
    ids = seed_all(runtime, sfmc)
    twin = clone(runtime)
    assert redis_state(twin.redis) == redis_state(runtime.redis)
    assert store_state(twin) == store_state(runtime)
    before = redis_state(runtime.redis)

    one_by_one = [privacy.forget_contact(runtime, T, key, email, scan=scan) for key, email in PEOPLE]
    batch = privacy.forget_contacts(twin, T, PEOPLE, scan=scan)

    assert redis_state(twin.redis) == redis_state(runtime.redis)
    assert store_state(twin) == store_state(runtime)
    assert [r["counts"] for r in batch] == [r["counts"] for r in one_by_one]
    assert [r["subject"] for r in batch] == [privacy.subject_hash(twin.redis, T, k) for k, _ in PEOPLE]
    assert audit(twin) == audit(runtime) and len(audit(twin)) == len(PEOPLE)
    # and the batch did erase: what names only an id found on the way is gone
    after = redis_state(twin.redis)
    assert after != before
    assert "report:both" not in after.get(keys.dead_letters(T), "")
    assert json.loads(twin.redis.get(keys.webhook_receipt(T, "hook-changed-4")))["stripped"] == "erased"
    assert batch[3]["counts"]["webhooks"] == 1  # D's: it names only sub-4
    assert batch[3]["counts"]["replayedDeadLetters"] == 1  # D's email, in the store
    assert batch[0]["counts"]["deadLetters"] == 3  # A's two, and the one naming A and B
    assert sum(batch[4]["counts"].values()) == 0 and sum(batch[5]["counts"].values()) == 0
    assert twin.ledger.get(T, ids["f"]) is not None and twin.ledger.get(T, ids["b"]) is None
    if scan:  # C's execution only a SCAN finds, and the letter naming only its id
        assert twin.ledger.get(T, ids["c"]) is None
        assert "render:older" not in after.get(keys.dead_letters(T), "")
        assert batch[2]["counts"]["executions"] == 1 and batch[2]["counts"]["deadLetters"] == 1
    else:
        assert twin.ledger.get(T, ids["c"]) is not None
        assert "render:older" in after.get(keys.dead_letters(T), "")


def test_a_batch_walks_the_keyspace_once_however_many_people_it_holds(runtime, sfmc, monkeypatch):
    seed_all(runtime, sfmc)
    r = runtime.redis
    walks: list[str] = []
    hash_walks: list[str] = []
    scan_iter, hscan_iter = r.scan_iter, r.hscan_iter
    monkeypatch.setattr(r, "scan_iter", lambda *a, **kw: walks.append(kw.get("match")) or scan_iter(*a, **kw))
    monkeypatch.setattr(r, "hscan_iter", lambda name, **kw: hash_walks.append(name) or hscan_iter(name, **kw))

    privacy.forget_contacts(runtime, T, PEOPLE)

    prefixes = [keys.execution(T, "*"), keys.subscription(T, "*"), keys.webhook_receipt(T, "*")]
    assert walks == prefixes  # one SCAN each, in the order the steps need
    assert hash_walks == [keys.matches_parked(T), keys.dead_letters(T), keys.dead_letters_replayed(T)]
    walks.clear()
    privacy.forget_contact(runtime, T, "EXT-AAAA")
    privacy.forget_contact(runtime, T, "EXT-BBBB")
    assert walks == prefixes * 2  # one by one: a walk per person


def test_an_empty_batch_does_nothing_and_a_blank_contact_key_is_refused(runtime):
    assert privacy.forget_contacts(runtime, T, []) == []
    with pytest.raises(ValueError, match="contact key"):
        privacy.forget_contacts(runtime, T, [("EXT-1", None), ("  ", "x@example.com")])
    assert privacy.erasures(runtime.redis, T) == []


# -- the matcher ------------------------------------------------------------------------------


class OnePerson:
    """The one-person matcher erasure used before batches (kept here as the reference)."""

    def __init__(self, contact_key: str, email: str | None) -> None:
        self.ids = {contact_key}
        self.email = (email or "").strip().lower()
        if self.email:
            self.ids.add(self.email)

    def add(self, *values: str) -> None:
        self.ids.update(v for v in values if v)

    def _text_matches(self, text: str) -> bool:
        if text in self.ids or (self.email and self.email in text.lower()):
            return True
        return any(part in self.ids for part in text.split(":")) if ":" in text else False

    def matches(self, value: Any) -> bool:
        if isinstance(value, str):
            if self._text_matches(value):
                return True
            if value[:1] in "{[":
                try:
                    return self.matches(json.loads(value))
                except ValueError:
                    return False
            return False
        if isinstance(value, dict):
            return any(self.matches(k) or self.matches(v) for k, v in value.items())
        if isinstance(value, (list, tuple)):
            return any(self.matches(v) for v in value)
        return False


# identifiers from a few letters, so that texts often hold one, or a part or a case of one
TOKEN = st.text(alphabet="ab@:.Ax", min_size=1, max_size=6)
EMAIL = st.one_of(st.none(), st.just(""), TOKEN, st.builds("{}@{}".format, TOKEN, TOKEN))


def texts(people: list[tuple[str, str | None]]) -> st.SearchStrategy[str]:
    known = [p for key, email in people for p in (key, email or "")]
    piece = st.one_of(st.sampled_from(known), TOKEN, st.sampled_from(known).map(str.upper))
    return st.lists(piece, max_size=4).flatmap(
        lambda parts: st.sampled_from(["", ":", " ", "x"]).map(lambda sep: sep.join(parts))
    )


def values(people: list[tuple[str, str | None]]) -> st.SearchStrategy[Any]:
    leaf = st.one_of(texts(people), st.integers(), st.none())
    tree = st.recursive(
        leaf,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3),
            st.dictionaries(texts(people), inner, max_size=3),
            st.lists(inner, max_size=3).map(json.dumps),
            st.dictionaries(texts(people), inner, max_size=3).map(json.dumps),
        ),
        max_leaves=8,
    )
    return tree


@settings(max_examples=120, deadline=None)
@given(data=st.data(), people=st.lists(st.tuples(TOKEN, EMAIL), min_size=1, max_size=5))
def test_the_batch_matcher_names_whom_the_one_person_matcher_names(data, people):
    batch = privacy._People(people)
    reference = [OnePerson(key.strip(), email) for key, email in people]
    for i, extra in enumerate(
        data.draw(st.lists(st.lists(TOKEN, max_size=2), min_size=len(people), max_size=len(people)))
    ):
        batch.add(i, *extra)  # the ids found on the way
        reference[i].add(*extra)
    for _ in range(5):
        value = data.draw(values(people))
        expected = {i for i, person in enumerate(reference) if person.matches(value)}
        assert batch.who(value) == expected, value
        assert batch.first(value) == min(expected, default=None)


# -- the command ------------------------------------------------------------------------------


@pytest.fixture
def command(runtime, monkeypatch, settings_for_cli):
    monkeypatch.setattr("pipeline.settings.get_settings", lambda: settings_for_cli)
    monkeypatch.setattr("pipeline.tenancy.handles.redis_client", lambda url: runtime.redis)
    return lambda *args: cli.main(["forget", "--tenant", T, *args])


@pytest.fixture
def settings_for_cli(settings):
    return settings


def test_forget_from_a_csv_erases_each_person_and_prints_a_line_each(
    runtime, sfmc, command, tmp_path, capsys
):
    ids = seed_all(runtime, sfmc)
    people = tmp_path / "erasures.csv"
    people.write_text("contact,email\nEXT-AAAA,alice@example.com\n\nEXT-BBBB,\nEXT-CCCC\n")
    assert command("--from", str(people)) == 0
    captured = capsys.readouterr()
    lines = [json.loads(line) for line in captured.out.splitlines()]
    assert [line["line"] for line in lines] == [2, 4, 5]
    assert [line["subject"] for line in lines] == [
        privacy.subject_hash(runtime.redis, T, key) for key in ("EXT-AAAA", "EXT-BBBB", "EXT-CCCC")
    ]
    assert [line["email"] for line in lines] == [True, False, False]
    assert lines[0]["counts"]["executions"] == 1 and lines[2]["counts"]["executions"] == 1
    assert "forgot 3 people" in captured.err
    assert "EXT-AAAA" not in captured.out + captured.err and "alice" not in captured.out + captured.err
    assert len(privacy.erasures(runtime.redis, T)) == 3
    assert runtime.ledger.get(T, ids["a"]) is None and runtime.ledger.get(T, ids["f"]) is not None


def test_forget_from_jsonl_in_batches(runtime, sfmc, command, tmp_path, capsys, monkeypatch):
    ids = seed_all(runtime, sfmc)
    monkeypatch.setattr("pipeline.cli.upkeep.FORGET_BATCH", 2)
    sizes: list[int] = []
    forget_contacts = privacy.forget_contacts
    monkeypatch.setattr(
        privacy,
        "forget_contacts",
        lambda rt, t, people, **kw: sizes.append(len(people)) or forget_contacts(rt, t, people, **kw),
    )
    people = tmp_path / "erasures.jsonl"
    people.write_text(
        '{"contact": "EXT-AAAA", "email": "alice@example.com"}\n{"contact": "EXT-BBBB"}\n'
        '{"contact": "EXT-CCCC", "email": null}\n'
    )
    assert command("--from", str(people), "--index-only") == 0
    assert sizes == [2, 1]
    assert [json.loads(line)["line"] for line in capsys.readouterr().out.splitlines()] == [1, 2, 3]
    assert runtime.ledger.get(T, ids["b"]) is None
    assert runtime.ledger.get(T, ids["c"]) is not None  # claimed before the index: --index-only misses it


@pytest.mark.parametrize(
    ("name", "text", "problems"),
    [
        (
            "people.csv",
            "contact,email\nEXT-AAAA,alice@example.com\n,bob@example.com\n  ,x@example.com\n",
            ["2 bad lines", "line 3: contact is required", "line 4: contact is required"],
        ),
        (
            "people.jsonl",
            '{"contact": "EXT-AAAA"}\n[1]\n{"contact": 5}\n'
            '{"contact": "EXT-D", "mail": "d@example.com"}\n{oops\n',
            [
                "line 2: not a JSON object",
                "line 3: contact must be a text",
                "line 4: unknown field 'mail'",
                "line 5: not JSON",
            ],
        ),
        (
            "people.csv",
            "Contact,Email\nEXT-AAAA,alice@example.com\n",
            ["line 2: unknown field 'Contact', 'Email'"],
        ),
    ],
)
def test_a_bad_line_erases_no_one_and_is_named(
    runtime, sfmc, command, tmp_path, capsys, name, text, problems
):
    ids = seed_all(runtime, sfmc)
    people = tmp_path / name
    people.write_text(text)
    assert command("--from", str(people)) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "no one was erased" in captured.err and "Traceback" not in captured.err
    for problem in problems:
        assert problem in captured.err
    assert runtime.ledger.get(T, ids["a"]) is not None
    assert privacy.erasures(runtime.redis, T) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from", "missing.csv"], "is not a file"),
        (["--from", "{dir}/people.txt"], "use a .csv or .jsonl file"),
        (["--from", "{dir}/empty.csv"], "no one to erase"),
        (["--from", "{dir}/empty.csv", "--email", "a@example.com"], "--email goes with --contact"),
    ],
)
def test_the_file_itself_can_be_refused(runtime, command, tmp_path, capsys, args, message):
    (tmp_path / "people.txt").write_text("contact\nEXT-1\n")
    (tmp_path / "empty.csv").write_text("contact,email\n")
    assert command(*[a.format(dir=tmp_path) for a in args]) == 2
    assert message in capsys.readouterr().err


def test_contact_and_from_are_one_or_the_other(command, tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        command("--contact", "EXT-1", "--from", str(tmp_path / "p.csv"))
    assert exited.value.code == 2 and "not allowed with" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        command()
    assert (
        exited.value.code == 2
        and "one of the arguments --contact --from is required" in capsys.readouterr().err
    )
