"""The benchmark harness's own arithmetic and measurements (not speeds: nothing is timed)."""

import base64
import subprocess
import sys

import pytest
from rich.console import Console

from bench.history_cost import key_group, per_unit, plateau
from bench.procs import PeakRss, cpu_seconds
from bench.rate_limit import LIMIT, window_figures
from bench.run import main, merged, partial, print_table
from pipeline.journeys.render import render_event
from pipeline.sandbox import rokt
from pipeline.sandbox.jbsim import DEMO_TEMPLATE
from pipeline.sandbox.rokt import RoktSimulator

EVENT = render_event(DEMO_TEMPLATE, {"FirstName": "Ava"}, "evt-1")


def test_window_figures_count_what_the_vendor_saw_inside_the_window():
    start = 1000.0
    accepted = [start - 0.5] + [start + i / LIMIT for i in range(int(LIMIT))]  # second 0: exactly LIMIT
    accepted += [start + 1 + i / (LIMIT * 2) for i in range(int(LIMIT))]  # second 1: half a second's burst
    throttled = [start + 1.6, start + 1.7, start + 3.5]  # the last is outside a 2-s window
    figures = window_figures(accepted, throttled, start, 2)
    assert figures["accepted"] == 2 * LIMIT
    assert figures["throttled_429"] == 2
    assert figures["sent"] == 2 * LIMIT + 2
    assert figures["utilization"] == 1.0
    assert figures["windows_over_limit"] == 1  # second 1 holds LIMIT + 2 sends
    assert figures["max_in_any_1s_window"] > LIMIT


def test_window_figures_measure_against_the_limit_they_are_given():
    """bench/corrections.py measures at the Tenant default (50/s), not rate_limit's 100/s."""
    start, limit = 1000.0, 50.0
    accepted = [start + i / 60 for i in range(60)] + [start + 1 + i / 40 for i in range(40)]
    figures = window_figures(accepted, [], start, 2, limit)
    assert figures["utilization"] == 1.0  # 100 calls in 2 s at 50/s
    assert figures["windows_over_limit"] == 1  # second 0 holds 60
    assert window_figures(accepted, [], start, 2)["windows_over_limit"] == 0  # at 100/s: none


BURN_THEN_WAIT = """
import sys, time
end = time.process_time() + 0.3
while time.process_time() < end:
    pass
print("burnt", flush=True)
sys.stdin.read()
"""


def test_cpu_seconds_and_peak_rss_of_a_live_process_tree():
    burner = subprocess.Popen(
        [sys.executable, "-c", BURN_THEN_WAIT], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert burner.stdout.readline() == "burnt\n"
        assert cpu_seconds([burner.pid]) >= 0.3
        with PeakRss([burner.pid], interval=0.01) as peak:
            assert peak.peak_mb() > 1
    finally:
        burner.stdin.close()
        burner.wait(10)
    assert cpu_seconds([burner.pid]) == 0  # gone: nothing left to count


def test_tables_put_each_group_of_figures_on_a_row(capsys):
    figures = {"window_s": 30, "ours": {"utilization": 0.96}, "intake": {"c1": {"rps": 5}, "note": "x"}}
    print_table(Console(width=200), "demo", figures)
    out = capsys.readouterr().out
    assert "window_s=30" in out
    rows = [line.split() for line in out.splitlines()[2:]]
    assert rows == [["ours", "0.96"], ["intake", "c1", "5"], ["intake", "x"]]


def test_unknown_benchmark_is_refused(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["intake", "nope"])
    assert exited.value.code == 2
    assert "unknown benchmark nope" in capsys.readouterr().err


def test_rokt_simulator_reports_when_posts_arrived_and_which_were_throttled():
    sim = RoktSimulator()
    client = sim.app.test_client()
    basic = base64.b64encode(f"{rokt.DEFAULT_CLIENT_ID}:{rokt.DEFAULT_CLIENT_SECRET}".encode()).decode()
    token = client.post(
        "/oauth2/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": f"Basic {basic}"},
    ).json["access_token"]
    sub = client.post("/__sandbox__/subscriptions", json={"accountCode": "acct", "subscriptions": [{}]})
    sim.faults.rate_limit = 1
    body = {"event": dict(EVENT), "subscriptionIds": sub.json["subscriptionIds"]}
    headers = {"Authorization": f"Bearer {token}"}
    try:
        statuses = [
            client.post("/v1/subscriptionevent/acct", json=body, headers=headers).status_code
            for _ in range(2)
        ]
        posts = client.get("/__sandbox__/posts").json
    finally:
        sim.sender.stop()
    assert statuses == [202, 429]
    assert len(posts["accepted"]) == 1 and len(posts["throttled"]) == 1
    assert posts["accepted"][0] <= posts["throttled"][0]


def test_plateau_is_each_half_after_the_first_window_and_what_still_grows():
    mib = 2**20
    # 50 contacts/s for 100 s, a 10-s window: climbing until 15 s, then 1 MiB flat plus 100
    # bytes per contact fed (what a 7-day receipt adds)
    samples = [(float(t), (min(t, 15) / 15) + 100 * 50 * t / mib) for t in range(2, 101, 2)]
    figures = plateau(samples, fed_seconds=100, window=10, rate=50)
    assert figures["growth_bytes_per_contact"] == 100
    assert figures["first_half_mean"] < figures["second_half_mean"]
    assert figures["first_half_range"] == round((48 - 16) * 100 * 50 / mib, 2)  # the climb is left out
    flat = plateau([(float(t), 1.0) for t in range(2, 101, 2)], 100, 10, 50)
    assert flat["growth_bytes_per_contact"] == 0
    assert flat["first_half_mean"] == flat["second_half_mean"] == 1.0
    assert plateau([(1.0, 1.0)], 100, 10, 50) == {}  # nothing after the first window: no plateau


def test_per_unit_divides_only_what_was_counted():
    assert per_unit(1_380_000, 10_000) == 138
    assert per_unit(500, 0) is None


def test_a_partial_run_keeps_the_full_runs_machine_and_stamps_its_own_figures():
    previous = {
        "machine": {"date": "2026-11-27", "git_commit": "old"},
        "quick": False,
        "total_seconds": 2000.0,
        "pipeline": {"cpu_ms_per_contact": 8.9},
        "memory": {"rss_mb_1k": 81.7, "rss_mb_20k": 95.3},
    }
    ours = {
        "machine": {"date": "2026-12-07", "git_commit": "new", "git_dirty": False},
        "quick": True,
        "memory": {"redis_bytes_per_terminal_contact": 138},
        "history_cpu": {"flush_history_cpu_ms_per_contact": 0.47},
        "total_seconds": 600.0,
    }
    results = partial(previous, ours, ["history"])
    assert results["machine"] == previous["machine"]
    assert results["quick"] is False and results["total_seconds"] == 2000.0
    assert results["pipeline"] == previous["pipeline"]
    stamp = {"date": "2026-12-07", "git_commit": "new", "git_dirty": False, "quick": True}
    assert results["memory"] == {
        **previous["memory"],
        "redis_bytes_per_terminal_contact": 138,
        "run:history": stamp,
    }
    assert results["history_cpu"]["run:history"] == stamp
    assert merged({"a": 1}, {"b": 2}) == {"a": 1, "b": 2}
    assert merged({"a": 1}, 3) == 3


def test_key_groups_name_the_part_after_the_tenant_or_the_deployment_area():
    assert key_group("rsf:mem:exec:abc") == "exec"
    assert key_group("rsf:mem:webhook-applied:x") == "webhook-applied"
    assert key_group("rsf:_ops:heartbeat:w1") == "_ops"
    assert key_group("_kombu.binding.render") == "_kombu"
    assert key_group("unacked") == "unacked"
