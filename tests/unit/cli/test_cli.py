"""`rokt-sfmc` on fakeredis: help on every flag, --version, exit codes (3 when Redis is unreachable,
1 when a replay, reconcile or health check falls short), dlq stats/purge and the status renderer.

The checks behind `healthcheck` and the purge's selection are tested where they live
(tests/unit/ops/test_heartbeats.py, tests/unit/stores/test_deadletters.py); here, what the
commands make of them: the lines printed and the exit codes."""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import pytest
import responses

from pipeline import cli
from pipeline.cli import common
from pipeline.cli import report as report_command
from pipeline.cli import status as status_command
from pipeline.infra import keys
from pipeline.ops import heartbeats
from pipeline.settings import DEFAULT_TENANT, load_settings
from pipeline.stores.deadletters import record_dead_letter
from pipeline.upkeep import reconcile
from pipeline.vocabulary import Stage

UNREACHABLE = "redis://127.0.0.1:1/0"  # nothing listens on port 1: connection refused at once
T = DEFAULT_TENANT  # the unit settings' tenant, pinned from the environment


@pytest.fixture
def on_fake_redis(monkeypatch, settings, fake_redis):
    """Every command reads the unit settings and talks to fakeredis."""
    monkeypatch.setattr("pipeline.settings.get_settings", lambda: settings)
    monkeypatch.setattr("pipeline.tenancy.handles.redis_client", lambda url: fake_redis)
    monkeypatch.setattr("pipeline.infra.redis_clients.redis_client", lambda url: fake_redis)
    return fake_redis


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# -- the parser -----------------------------------------------------------------------------------
def _parsers(parser: argparse.ArgumentParser, path: str = "rokt-sfmc"):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            for name, subparser in action.choices.items():
                assert helps.get(name), f"`{path} {name}` has no help"
                yield from _parsers(subparser, f"{path} {name}")


def test_every_flag_and_argument_of_every_command_has_help():
    missing = [
        f"{path}: {action.option_strings or action.dest}"
        for path, parser in _parsers(cli.build_parser())
        for action in parser._actions
        if not isinstance(action, argparse._SubParsersAction)
        and not (action.help or "").strip()
        and action.help != argparse.SUPPRESS
    ]
    assert missing == []


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"rokt-sfmc {version('rokt-sfmc')}"


@pytest.mark.parametrize("bad", ["30", "d", "-1d", "3 days", "1y"])
def test_a_bad_duration_is_refused_by_the_parser(bad, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["dlq", "purge", "--tenant", T, "--older-than", bad])
    assert exit_.value.code == 2 and "--older-than" in capsys.readouterr().err


def test_durations():
    assert common.duration("30d").total_seconds() == 30 * 86400
    assert common.duration("12h").total_seconds() == 12 * 3600
    assert common.duration("1.5m").total_seconds() == 90


# -- Redis unreachable: exit 3, one line --------------------------------------------------------
@pytest.mark.parametrize(
    "argv",
    [
        ["dlq", "list", "--tenant", "x"],
        ["dlq", "stats", "--tenant", "x"],
        ["dlq", "purge", "--tenant", "x", "--older-than", "30d", "--yes"],
        ["replay", "--tenant", "x"],
        ["reconcile", "--tenant", "x"],
        ["report", "--tenant", "x"],
        ["templates", "list", "--tenant", "x"],
        ["api-keys", "list", "--tenant", "x"],
        ["tenants", "list"],
        ["status", "--tenant", "x"],
    ],
)
def test_redis_unreachable_exits_3_with_one_line(argv, monkeypatch, capsys):
    monkeypatch.setattr("pipeline.settings.get_settings", lambda: load_settings({"REDIS_URL": UNREACHABLE}))
    code, _out, err = _run(capsys, *argv)
    assert code == common.EXIT_REDIS_UNREACHABLE
    assert err.startswith("error: Redis unreachable") and len(err.strip().splitlines()) == 1


def test_redis_unreachable_the_process_prints_no_traceback():
    env = {**os.environ, "REDIS_URL": UNREACHABLE}
    for argv in (["dlq", "list", "--tenant", "x"], ["status", "--json"]):
        done = subprocess.run(
            [sys.executable, "-m", "pipeline.cli", *argv], env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 3, done.stderr
        assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_other_errors_are_not_hidden(monkeypatch):
    def boom(args):
        raise RuntimeError("a bug")

    monkeypatch.setattr(report_command, "cmd_report", boom)
    with pytest.raises(RuntimeError):
        cli.main(["report", "--tenant", T])


# -- dlq stats and purge ------------------------------------------------------------------------
def _letter(r, item_id: str, stage: Stage, error_class: str, days_ago: float = 0) -> None:
    record_dead_letter(
        r, T, item_id, stage=stage, error_class=error_class, reason="why", attempts=1, payload={"x": 1}
    )
    if days_ago:
        record = json.loads(r.hget(keys.dead_letters(T), item_id))
        then = time.time() - days_ago * 86400
        record["failedAt"] = time.strftime("%Y-%m-%dT%H:%M:%S.000+00:00", time.gmtime(then))
        r.hset(keys.dead_letters(T), item_id, json.dumps(record, sort_keys=True))


@pytest.fixture
def letters(on_fake_redis):
    r = on_fake_redis
    _letter(r, "old-1", Stage.CREATE_EVENT, "permanent", days_ago=40)
    _letter(r, "old-2", Stage.RECORD_STATUS, "retryable", days_ago=31)
    _letter(r, "mid", Stage.CREATE_EVENT, "throttled", days_ago=10)
    _letter(r, "new", Stage.CREATE_EVENT, "permanent")
    r.sadd(keys.dead_letters_auto_retried(T), "old-2", "mid")
    return r


def test_dlq_stats(letters, capsys):
    code, out, _err = _run(capsys, "dlq", "stats", "--tenant", T)
    stats = json.loads(out)
    assert code == 0 and stats["tenant"] == T and stats["total"] == 4
    assert stats["byStage"]["create_event"] == {"total": 3, "byErrorClass": {"permanent": 2, "throttled": 1}}
    assert stats["byStage"]["record_status"] == {"total": 1, "byErrorClass": {"retryable": 1}}
    assert stats["byErrorClass"] == {"permanent": 2, "retryable": 1, "throttled": 1}
    assert stats["oldestFailedAt"] < stats["newestFailedAt"]
    assert stats["oldestFailedAt"] == json.loads(letters.hget(keys.dead_letters(T), "old-1"))["failedAt"]
    code, out, _err = _run(capsys, "dlq", "stats", "--tenant", T, "--stage", "record_status")
    assert json.loads(out)["total"] == 1


def test_dlq_stats_of_an_empty_store(on_fake_redis, capsys):
    code, out, _err = _run(capsys, "dlq", "stats", "--tenant", T)
    assert code == 0
    assert json.loads(out) == {
        "tenant": T,
        "total": 0,
        "byStage": {},
        "byErrorClass": {},
        "oldestFailedAt": None,
        "newestFailedAt": None,
    }


def test_dlq_purge_lists_without_yes_and_removes_with_it(letters, capsys):
    code, out, err = _run(capsys, "dlq", "purge", "--tenant", T, "--older-than", "30d")
    assert code == 1 and "--yes" in err
    assert json.loads(out)["ids"] == ["old-1", "old-2"]
    assert letters.hlen(keys.dead_letters(T)) == 4  # nothing removed

    code, out, _err = _run(capsys, "dlq", "purge", "--tenant", T, "--older-than", "30d", "--yes")
    assert code == 0 and json.loads(out)["removed"] == 2
    assert sorted(letters.hkeys(keys.dead_letters(T))) == ["mid", "new"]
    assert letters.smembers(keys.dead_letters_auto_retried(T)) == {"mid"}

    # nothing older left: nothing to confirm
    code, out, err = _run(capsys, "dlq", "purge", "--tenant", T, "--older-than", "30d")
    assert code == 0 and json.loads(out)["matching"] == 0 and err == ""


def test_dlq_purge_leaves_no_orphan_in_the_time_index(letters, capsys):
    """Purge removes through deadletters: each removed letter's `dlq-by-time` entry goes too."""
    assert sorted(letters.zrange(keys.dead_letters_by_time(T), 0, -1)) == ["mid", "new", "old-1", "old-2"]
    code, out, _err = _run(capsys, "dlq", "purge", "--tenant", T, "--older-than", "30d", "--yes")
    assert code == 0 and json.loads(out)["removed"] == 2
    indexed = sorted(letters.zrange(keys.dead_letters_by_time(T), 0, -1))
    assert indexed == sorted(letters.hkeys(keys.dead_letters(T))) == ["mid", "new"]


def test_dlq_purge_filters_by_stage(letters, capsys):
    code, out, _err = _run(
        capsys, "dlq", "purge", "--tenant", T, "--older-than", "1d", "--stage", "create_event", "--yes"
    )
    assert code == 0 and json.loads(out)["removed"] == 2
    assert sorted(letters.hkeys(keys.dead_letters(T))) == ["new", "old-2"]


# -- replay and reconcile: non-zero when only part succeeded -------------------------------------
def test_replay_exits_0_when_every_letter_was_replayed(on_fake_redis, sent_tasks, capsys):
    record_dead_letter(
        on_fake_redis, T, "ev-1", stage=Stage.WEBHOOK, error_class="x", reason="r", attempts=1,
        payload={"eventId": "ev-1"},
    )  # fmt: skip
    code, out, _err = _run(capsys, "replay", "--tenant", T)
    report = json.loads(out)
    assert code == 0 and report["replayed"] == 1 and report["failed"] == report["skipped"] == 0
    # the webhook again, then a flush that takes the replayed letter to the history store
    assert [task.args for task in sent_tasks] == [[T, "ev-1"], [T]]
    assert sent_tasks[1].name == "rsf.flush_history"


def test_replayed_letters_are_listed_and_shown_from_the_history_store(
    monkeypatch, fake_redis, sent_tasks, capsys, tmp_path
):
    from pipeline.delivery.flush import flush_history
    from pipeline.tenancy.handles import Runtime
    from tests.unit.conftest import ENV

    settings = load_settings(
        {**ENV, "HISTORY_URL": f"sqlite:///{tmp_path}/history.db"}
    )  # shared by the commands
    monkeypatch.setattr("pipeline.settings.get_settings", lambda: settings)
    monkeypatch.setattr("pipeline.tenancy.handles.redis_client", lambda url: fake_redis)
    monkeypatch.setattr("pipeline.infra.redis_clients.redis_client", lambda url: fake_redis)
    for item in ("ev-1", "ev-2"):
        record_dead_letter(
            fake_redis, T, item, stage=Stage.WEBHOOK, error_class="x", reason="r", attempts=1,
            payload={"eventId": item},
        )  # fmt: skip
    assert _run(capsys, "replay", "--tenant", T, "--since", "2000-01-01")[0] == 0
    flush_history(Runtime(settings, fake_redis), T, consumer="c", max_wait=0)  # the flush a worker runs

    code, out, _err = _run(capsys, "dlq", "list", "--tenant", T)
    assert code == 0 and out == ""  # nothing waits for a replay
    code, out, _err = _run(capsys, "dlq", "list", "--tenant", T, "--replayed")
    listed = [json.loads(line) for line in out.splitlines()]
    assert (
        code == 0 and [d["id"] for d in listed] == ["ev-1", "ev-2"] and all(d["replayedAt"] for d in listed)
    )
    code, out, _err = _run(capsys, "dlq", "show", "--tenant", T, "ev-2")
    assert code == 0 and json.loads(out)["payload"] == {"eventId": "ev-2"}
    code, out, _err = _run(capsys, "dlq", "stats", "--tenant", T, "--replayed")
    assert json.loads(out)["total"] == 2


def test_replay_exits_1_when_a_letter_is_stale_or_fails(on_fake_redis, sent_tasks, capsys):
    r = on_fake_redis
    record_dead_letter(
        r,
        T,
        "ev-1",
        stage=Stage.WEBHOOK,
        error_class="x",
        reason="r",
        attempts=1,
        payload={"eventId": "ev-1"},
    )
    # an execution that is no longer failed (never was, here): stale, nothing to replay
    record_dead_letter(
        r, T, "ex-1", stage=Stage.CREATE_EVENT, error_class="x", reason="r", attempts=1,
        payload={"executionId": "ex-1"},
    )  # fmt: skip
    # a letter missing its payload: it cannot be replayed, the others still are
    record_dead_letter(r, T, "bad", stage=Stage.RELEASE, error_class="x", reason="r", attempts=1, payload={})
    code, out, err = _run(capsys, "replay", "--tenant", T)
    report = json.loads(out)
    assert code == 1 and "2 of 3 dead letters not replayed" in err
    assert (report["selected"], report["replayed"], report["skipped"], report["failed"]) == (3, 1, 1, 1)
    assert list(report["errors"]) == ["bad"]
    assert r.hexists(keys.dead_letters(T), "bad")  # left for an operator
    # a dry run replays nothing and reports success
    code, out, _err = _run(capsys, "replay", "--tenant", T, "--dry-run")
    assert code == 0 and json.loads(out)["selected"] == 1


@pytest.mark.parametrize(
    ("report", "warn", "expected"),
    [
        (reconcile.ReconcileReport(redriven=3, confirmed=2), False, 0),
        (reconcile.ReconcileReport(confirmed=2, timed_out=1), False, 1),
        (reconcile.ReconcileReport(checked=1), True, 1),
    ],
)
def test_reconcile_exit_code(report, warn, expected, on_fake_redis, monkeypatch, capsys):
    def fake_reconcile(rt, tenant, enqueue_execution, enqueue_webhook):
        if warn:
            log = logging.getLogger("pipeline.upkeep.reconcile")
            log.warning("reconcile: cannot check execution e1 now: 503")
        return report

    monkeypatch.setattr(reconcile, "reconcile", fake_reconcile)
    code, out, err = _run(capsys, "reconcile", "--tenant", T)
    shown = json.loads(out)
    assert code == expected and shown["timed_out"] == report.timed_out
    assert bool(shown["warnings"]) is warn and bool(err) is bool(expected)


# -- healthcheck -----------------------------------------------------------------------------------
def _beat_at(r, kind: str, name: str, seconds_ago: float, monkeypatch) -> None:
    then = time.time() - seconds_ago
    with monkeypatch.context() as m:
        m.setattr(heartbeats.time, "time", lambda: then)
        heartbeats.beat(r, kind, name)


def test_healthcheck_worker_fresh_stale_and_absent(on_fake_redis, monkeypatch, capsys):
    """Healthy: the check's one line on stdout, exit 0; unhealthy: on stderr, exit 1 (which
    workers count is heartbeats.worker_check's, tested with it)."""
    r = on_fake_redis
    _beat_at(r, "worker", "worker-1@fresh-host", 5, monkeypatch)
    _beat_at(r, "worker", "worker-1@stale-host", heartbeats.STALE_AFTER_SECONDS + 30, monkeypatch)
    code, out, err = _run(capsys, "healthcheck", "worker", "--hostname", "fresh-host")
    assert code == 0 and out.startswith("healthy: worker worker-1@fresh-host") and err == ""
    assert out.count("\n") == 1
    code, out, err = _run(capsys, "healthcheck", "worker", "--hostname", "stale-host")
    assert code == 1 and out == "" and err.startswith("unhealthy: worker worker-1@stale-host")
    assert "stale" in err and err.count("\n") == 1
    code, _out, err = _run(capsys, "healthcheck", "worker", "--hostname", "other-host")
    assert code == 1 and err.startswith("unhealthy: no worker heartbeat for 'other-host'")


def test_healthcheck_worker_defaults_to_this_host(on_fake_redis, monkeypatch, capsys):
    monkeypatch.setattr("socket.gethostname", lambda: "container-abc")
    assert _run(capsys, "healthcheck", "worker")[0] == 1
    _beat_at(on_fake_redis, "worker", "worker-2@container-abc", 1, monkeypatch)
    assert _run(capsys, "healthcheck", "worker")[0] == 0


def test_healthcheck_beat(on_fake_redis, monkeypatch, capsys):
    code, out, err = _run(capsys, "healthcheck", "beat")
    assert code == 1 and out == "" and err == "unhealthy: no beat heartbeat\n"
    _beat_at(on_fake_redis, "beat", "beat", heartbeats.STALE_AFTER_SECONDS + 5, monkeypatch)
    code, _out, err = _run(capsys, "healthcheck", "beat")
    assert code == 1 and err.startswith("unhealthy: beat: last tick")
    _beat_at(on_fake_redis, "beat", "beat", 2, monkeypatch)
    code, out, err = _run(capsys, "healthcheck", "beat")
    assert code == 0 and out.startswith("healthy: beat: last tick") and err == ""


def test_healthcheck_with_redis_unreachable_is_unhealthy(monkeypatch, capsys):
    monkeypatch.setattr("pipeline.settings.get_settings", lambda: load_settings({"REDIS_URL": UNREACHABLE}))
    code, _out, err = _run(capsys, "healthcheck", "worker")
    assert code == 1 and err.startswith("unhealthy: Redis unreachable")


@responses.activate
def test_healthcheck_web_and_exporter(on_fake_redis, capsys):
    responses.get("https://web.test/healthz", status=200, json={"status": "ok"})
    responses.get("https://down.test/healthz", status=503, json={"status": "unavailable"})
    responses.get("http://127.0.0.1:9999/healthz", status=200, body="ok\n")
    assert _run(capsys, "healthcheck", "web", "--url", "https://web.test/")[0] == 0
    code, _out, err = _run(capsys, "healthcheck", "web", "--url", "https://down.test")
    assert code == 1 and "answered 503" in err
    assert _run(capsys, "healthcheck", "exporter", "--port", "9999")[0] == 0
    code, _out, err = _run(capsys, "healthcheck", "exporter", "--port", "9998")
    assert code == 1 and "unreachable" in err


# -- status --------------------------------------------------------------------------------------
SNAPSHOT = {
    "generatedAt": 1764254400.0,
    "tenants": {
        T: {
            "status": "active",
            "queues": {"render.default": {"waiting": 3, "unacked": 1, "oldestAgeSeconds": 12.25}},
            "deadLetters": {"create_event": {"permanent": 2}},
            "limiter": {"rokt": {"paused": True, "remainingSeconds": 4.5}},
            "webhooks": {},
            "reconnectNeeded": False,
            "brandNewFigure": {"nested": {"deeper": 42}},
        }
    },
    "sharedQueues": {"webhooks": {"waiting": 0, "unacked": 0, "oldestAgeSeconds": None}},
    "workers": {"worker-1@host": 3.0},
    "beat": {"lastTickAgeSeconds": None},
}


def test_status_rows_are_every_leaf_of_the_snapshot():
    rows = list(status_command.status_rows(SNAPSHOT))
    assert (T, "status", "", "active") in rows
    assert (T, "queues", "render.default oldestAgeSeconds", 12.25) in rows
    assert (T, "deadLetters", "create_event permanent", 2) in rows
    assert (T, "webhooks", "", None) in rows
    assert (T, "brandNewFigure", "nested deeper", 42) in rows  # no code knows this figure
    assert (status_command.SERVICE_ROW, "workers", "worker-1@host", 3.0) in rows
    assert (status_command.SERVICE_ROW, "beat", "lastTickAgeSeconds", None) in rows
    assert not any(row[1] == "generatedAt" for row in rows)


@pytest.fixture
def snapshots(on_fake_redis, monkeypatch):
    calls = []

    def snapshot(rt, tenants):
        calls.append(tenants)
        return SNAPSHOT

    monkeypatch.setattr(status_command, "_snapshot", snapshot)
    return calls


def test_status_json_and_table(snapshots, capsys):
    code, out, _err = _run(capsys, "status", "--json", "--tenant", T)
    assert code == 0 and json.loads(out) == SNAPSHOT and snapshots == [[T]]
    code, out, _err = _run(capsys, "status")
    assert code == 0 and snapshots[-1] is None
    for text in ("render.default oldestAgeSeconds", "12.2", "brandNewFigure", "nested deeper", "42", "yes"):
        assert text in out
    code, _out, err = _run(capsys, "status", "--tenant", "nobody")
    assert code == 2 and "unknown tenant 'nobody'" in err


def test_status_watch_refreshes_until_ctrl_c(snapshots, monkeypatch, capsys):
    def snapshot(rt, tenants):
        snapshots.append(tenants)
        if len(snapshots) == 3:
            raise KeyboardInterrupt
        return SNAPSHOT

    monkeypatch.setattr(status_command, "_snapshot", snapshot)
    code, out, _err = _run(capsys, "status", "--json", "--watch", "0.01")
    assert code == 0 and [json.loads(line) for line in out.splitlines()] == [SNAPSHOT, SNAPSHOT]
    snapshots.clear()
    code, out, _err = _run(capsys, "status", "--watch", "0.01")
    assert code == 0 and len(snapshots) == 3 and "brandNewFigure" in out


# -- exporter ------------------------------------------------------------------------------------
def test_exporter_serves_on_the_settings_port_unless_told(on_fake_redis, monkeypatch, capsys):
    served = []
    monkeypatch.setattr("pipeline.ops.exporter.serve", lambda port, host: served.append((port, host)))
    monkeypatch.setattr("pipeline.infra.logsetup.configure_logging", lambda settings, process: None)
    assert _run(capsys, "exporter")[0] == 0
    assert _run(capsys, "exporter", "--port", "9100", "--host", "127.0.0.1")[0] == 0
    assert served == [(9808, "0.0.0.0"), (9100, "127.0.0.1")]

    def taken(port, host):
        raise OSError(98, "Address already in use")

    monkeypatch.setattr("pipeline.ops.exporter.serve", taken)
    code, _out, err = _run(capsys, "exporter", "--port", "9100")
    assert code == 2 and "cannot listen on 0.0.0.0:9100: Address already in use" in err


# -- what a newcomer met by hand (issue 20) -----------------------------------------------------
def test_help_cites_only_files_that_exist(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    cited = set(re.findall(r"[\w./-]+\.md\b", capsys.readouterr().out))
    root = Path(cli.__file__).resolve().parents[2]
    assert cited, "the help points a reader at the documentation"
    assert not [name for name in cited if not (root / name).exists()], cited


@pytest.mark.parametrize("argv", [["templates", "list", "--tenant", "default"], ["tenants", "list"]])
def test_settings_the_service_refuses_are_one_line_and_exit_2(argv, monkeypatch, capsys):
    def refused():
        raise ValueError(
            "tenant 'default': JB_JWT_SECRET: is a published sandbox secret (accepted only with SANDBOX=1)"
        )

    monkeypatch.setattr("pipeline.settings.get_settings", refused)
    code, out, err = _run(capsys, *argv)
    assert code == 2 and out == ""
    assert err == (
        "error: settings: tenant 'default': JB_JWT_SECRET: is a published sandbox secret "
        "(accepted only with SANDBOX=1)\n"
    )


def test_serve_with_a_sandbox_secret_outside_sandbox_exits_2_without_a_traceback():
    from pipeline.sandbox import sandbox_env

    env = {
        "PATH": os.environ.get("PATH", ""),
        **sandbox_env("http://127.0.0.1:9101", "http://127.0.0.1:9102"),
    }
    for argv in (["serve", "--port", "1"], ["templates", "create", "--tenant", "default", "-"]):
        done = subprocess.run(
            [sys.executable, "-m", "pipeline.cli", *argv],
            env=env,
            input="{}",
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2, done.stderr
        assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
        assert "JB_JWT_SECRET" in done.stderr and "SANDBOX=1" in done.stderr


def test_tenants_list_ends_with_a_newline_and_says_when_there_are_none(on_fake_redis, monkeypatch, capsys):
    code, out, err = _run(capsys, "tenants", "list")
    assert code == 0 and out.endswith("}\n") and out.count("\n") == 1  # the pinned `default`
    assert json.loads(out)["name"] == T

    no_pinned = load_settings({"REDIS_URL": "redis://unused:6379/0"})
    monkeypatch.setattr("pipeline.settings.get_settings", lambda: no_pinned)
    code, out, err = _run(capsys, "tenants", "list")
    assert code == 0 and out == ""  # nothing for a script to parse
    assert err.startswith("no tenants") and err.endswith("\n")


def test_without_secret_key_the_registry_says_once_what_it_cannot_read(fake_redis, caplog):
    from pipeline.tenancy.handles import Runtime

    env = {"REDIS_URL": "redis://unused:6379/0", "SECRET_KEY": "unit-secret-key-0123456789abcdef-0123456789"}
    with_key = Runtime(load_settings(env), fake_redis).registry
    for name in ("brand-a", "brand-b", "brand-c"):
        with_key.add(name, {"jb_jwt_secret": f"{name}-Xq7v9LmN2pR4tY6wZ8aB0cD3eF5gH1jK"})
    without_key = Runtime(load_settings({"REDIS_URL": env["REDIS_URL"]}), fake_redis).registry
    with caplog.at_level(logging.INFO, logger="pipeline.tenancy.tenants"):
        assert without_key.names() == []
    records = [r for r in caplog.records if r.name == "pipeline.tenancy.tenants"]
    assert len(records) == 1, [r.getMessage() for r in records]
    assert records[0].levelno == logging.WARNING
    message = records[0].getMessage()
    assert "brand-a, brand-b, brand-c" in message and "SECRET_KEY" in message and "not set" in message
