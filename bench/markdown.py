"""The Performance table of docs/performance.md, rendered from results.json.

`make docs` writes it there, `python -m bench.markdown` prints it; the docs test keeps the copy
current."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).with_name("results.json")


def stage_rows(stages: dict[str, float] | None) -> list[tuple[str, str, str, str]]:
    """The pipeline's CPU per contact by stage (a worker instance per stage), when measured."""
    if not stages:
        return []
    figures = " · ".join(f"{stages[name]}" for name in ("render", "create", "flush"))
    return [("pipeline, a worker per stage", "CPU per contact: render · create · flush", f"{figures} ms", "")]


def performance_table(results: dict[str, Any]) -> str:
    rows = [("benchmark", "figure", "rokt-sfmc", "baseline (same run)"), ("---",) * 4]
    rows.extend(intake_rows(results.get("intake"), ""))
    rows.extend(intake_rows(results.get("intake_rabbitmq"), "RabbitMQ"))
    rows.extend(redirect_rows(results.get("redirect")))
    pipeline = results.get("pipeline")
    if pipeline:
        rows.append(
            (
                f"pipeline, {pipeline['contacts']:,} contacts",
                "worker CPU per contact · ratio",
                f"{pipeline['cpu_ms_per_contact']} ms · {pipeline['ratio']}x",
                f"no-op task {pipeline['noop_cpu_ms_per_task']} ms",
            )
        )
        rows.append(("pipeline", "contacts/s end to end", str(pipeline["contacts_per_s"]), ""))
        rows.extend(stage_rows(pipeline.get("stage_cpu_ms_per_contact")))
    limit = results.get("rate_limit")
    if limit:
        label = f"rate_limit, {limit['limit_per_s']:g}/s for {limit['window_s']} s"
        celery = [name for name in limit if name.startswith("celery_rate_limit_")]
        rows.append(
            (
                label,
                "utilization · max in 1 s · windows over",
                _limited(limit["ours"]),
                "; ".join(
                    f"Celery rate_limit {limit[n]['deployment']}: {_limited(limit[n])}" for n in celery
                ),
            )
        )
    batching = results.get("sfmc_batching")
    if batching:
        tokens = batching["token_requests"]
        rows.append(
            (
                "sfmc_batching",
                "calls per 10k rows · tokens",
                f"{batching['calls_per_10k_rows']:g} · SFMC {tokens['sfmc']}, Rokt {tokens['rokt']}",
                f"{batching['unbatched_calls_per_10k_rows']:,} (one upsert per row)",
            )
        )
    memory = results.get("memory")
    if memory:
        readings = {k: v for k, v in memory.items() if k.startswith("rss_mb_")}
        rows.append(
            (
                "memory",
                "peak RSS of a worker process",
                " · ".join(f"{k[7:]}: {v} MB" for k, v in readings.items()),
                "",
            )
        )
        if "main_process_mb_per_10k_tasks" in memory:
            rows.append(
                (
                    "memory",
                    "growth of the worker's main process per 10k tasks",
                    f"{memory['main_process_mb_per_10k_tasks']} MB",
                    f"no-op task: {memory['noop_main_process_mb_per_10k_tasks']} MB",
                )
            )
    rows.extend(history_rows(memory, results.get("history_cpu")))
    scale = results.get("scale")
    if scale:
        speeds = {k.rsplit("_", 1)[1]: v for k, v in scale.items() if k.startswith("contacts_per_s_")}
        rows.append(
            (
                f"scale, {scale['contacts']:,} contacts",
                "contacts/s with 1 · 2 · 4 processes",
                " · ".join(str(v) for v in speeds.values()),
                f"{scale['cores']} cores",
            )
        )
    rows.extend(tenants_rows(results.get("tenants")))
    fairness = results.get("fairness")
    if fairness:
        rows.append(
            (
                f"fairness, B's {fairness['b_executions']} behind A's {fairness['a_executions']:,}",
                "B's queue wait p50 · p99 (ms)",
                _waits(fairness["b_behind_a"]),
                f"B alone: {_waits(fairness['b_alone'])}",
            )
        )
    rows.extend(durability_rows(results.get("durability")))
    rows.extend(worker_loss_rows(results.get("worker_loss")))
    rows.extend(erasure_rows(results.get("erasure")))
    rows.extend(corrections_rows(results.get("corrections")))
    return "\n".join("| " + " | ".join(row) + " |" for row in rows) + "\n"


def history_rows(
    memory: dict[str, Any] | None, cpu: dict[str, Any] | None
) -> list[tuple[str, str, str, str]]:
    """`history`: Redis and the history store per finished contact (before the store, a finished
    execution stayed whole), Redis's used_memory across the run, and the store's worker CPU."""
    rows = []
    if memory and "redis_bytes_per_terminal_contact" in memory:
        name = f"history{_measured(memory)}, {memory['contacts']:,} contacts at {memory['contacts_per_s']}/s"
        rows.append(
            (
                name,
                "Redis bytes per finished contact · per subscriber · per webhook",
                f"{memory['redis_bytes_per_terminal_contact']} · {memory['redis_bytes_per_subscriber']} · "
                f"{memory['redis_bytes_per_webhook']}",
                f"whole execution (before the store): {memory['redis_bytes_per_whole_execution']}",
            )
        )
        rows.append(
            (
                name,
                f"store bytes per contact ({memory['store']})",
                f"{memory['store_bytes_per_contact']:,}",
                "",
            )
        )
        used = memory["redis_used_mb"]
        halves = [k for k in used if k.startswith("at_")]
        rows.append(
            (
                name,
                "Redis used MB at "
                + " · ".join(f"{int(k[3:]):,}" for k in halves)
                + " · plateau halves · growth per contact",
                " · ".join(str(used[k]) for k in halves)
                + f" · {used.get('first_half_mean')} → {used.get('second_half_mean')}"
                + f" · {used.get('growth_bytes_per_contact')} B",
                f"before the run: {used['before']}",
            )
        )
    if cpu:
        rows.append(
            (
                f"history{_measured(cpu)}, {cpu['contacts']:,} contacts",
                "worker CPU the store adds per contact (write · write and archive)",
                f"{cpu['flush_history_cpu_ms_per_contact']} ms ({cpu['accepted_write_cpu_ms']} · "
                f"{cpu['confirmed_write_archive_cpu_ms']})",
                f"goal ≤ {cpu['goal_ms_per_contact']} ms",
            )
        )
    return rows


def _measured(figures: dict[str, Any], name: str = "history") -> str:
    """When a partial run (of benchmark `name`) measured these figures, not the run of the
    table's machine line."""
    run = figures.get(f"run:{name}")
    return f" (measured {run['date'][:10]} at `{run['git_commit'][:10]}`)" if run else ""


def intake_rows(intake: dict[str, Any] | None, broker: str) -> list[tuple[str, str, str, str]]:
    """`intake` (Redis broker) and `intake_rabbitmq`: execute beside bare Flask and, where measured,
    beside the previous design that published the render task inside execute (`direct_send`)."""
    if not intake:
        return []
    name = f"intake, {broker}" if broker else "intake"
    if intake.get("ratio") is None:
        return [(name, "execute ÷ bare Flask at 50", "not measured", str(intake.get("reason", ""))[:160])]
    rows = []
    for level in ("c1", "c10", "c50"):
        ours, bare = intake["execute"][level], intake["bare_flask"][level]
        baseline = f"bare Flask {_http(bare)}"
        if "direct_send" in intake:
            baseline += f"; publish in execute {_http(intake['direct_send'][level])}"
        rows.append(
            (
                f"{name}, {level[1:]} connection{'' if level == 'c1' else 's'}",
                "rps · p50 · p99 (ms)",
                _http(ours),
                baseline,
            )
        )
    if "p99_ratio" not in intake:  # results of the design before the intake stream
        rows.append((name, "execute rps ÷ bare rps at 50", str(intake["ratio"]), ""))
        return rows
    rows.append(
        (
            name,
            "execute ÷ bare at 50: rps · p99 · lost",
            f"{intake['ratio']} · {intake['p99_ratio']} · {intake['lost']}",
            f"publish in execute: {intake['direct_send_ratio']} · {intake['direct_send_p99_ratio']}",
        )
    )
    return rows


def redirect_rows(redirect: dict[str, Any] | None) -> list[tuple[str, str, str, str]]:
    """`redirect`: the tracked-link redirect (every request a counted click) beside a bare Flask 302."""
    if not redirect:
        return []
    rows = []
    for level in ("c1", "c10", "c50"):
        ours, bare = redirect["redirect"][level], redirect["bare_flask"][level]
        connections = f"{level[1:]} connection{'' if level == 'c1' else 's'}"
        rows.append(
            (f"redirect, {connections}", "rps · p50 · p99 (ms)", _http(ours), f"bare Flask 302 {_http(bare)}")
        )
    rows.append(
        (
            "redirect",
            "redirect ÷ bare at 50: rps · p99 · uncounted",
            f"{redirect['ratio']} · {redirect['p99_ratio']} · {redirect['uncounted']}",
            f"{redirect['clicks_counted']:,} clicks counted",
        )
    )
    return rows


def durability_rows(durability: dict[str, Any] | None) -> list[tuple[str, str, str, str]]:
    """`durability`: what a SIGKILLed Redis loses, and what each durability choice costs execute."""
    if not durability:
        return []
    everysec = f"AOF everysec: {durability['everysec_rps']:g} · {durability['everysec_p99_ms']:g}"
    label = f"durability, execute at {durability['connections']} connections"
    return [
        (
            f"durability, demo --chaos crash-redis, {durability['crash_redis_contacts']:,} contacts",
            "lost · sent twice after a SIGKILL of Redis",
            f"{durability['crash_redis_lost']} · {durability['crash_redis_duplicates']}",
            "AOF everysec, restarted from its AOF",
        ),
        (
            label,
            "appendfsync always: rps · p99 (ms) · ratio",
            f"{durability['always_rps']:g} · {durability['always_p99_ms']:g} · "
            f"{durability['always_intake_ratio']}x",
            everysec,
        ),
        (
            label,
            "a replica + WAIT 1: rps · p99 (ms) · ratio",
            f"{durability['wait_replica_rps']:g} · {durability['wait_replica_p99_ms']:g} · "
            f"{durability['wait_replica_intake_ratio']}x",
            everysec,
        ),
    ]


def erasure_rows(erasure: dict[str, Any] | None) -> list[tuple[str, str, str, str]]:
    """`erasure`: `forget --index-only` of many contacts while the intake stream holds a backlog;
    and the default `forget` (with the keyspace SCANs) of as many in one batch (`--from`)."""
    if not erasure:
        return []
    name = (
        f"erasure{_measured(erasure, 'erasure')}, {erasure['forgets']:,} contacts forgotten, "
        f"{erasure['waiting']:,} waiting in intake"
    )
    rows = [
        (
            name,
            "seconds for all (ms per contact)",
            f"{erasure['by_id_s']} s ({erasure['by_id_ms_per_contact']} ms)",
            f"the stream read per forget: {erasure['stream_pass_s_for_all']:,} s "
            f"({erasure['stream_pass_ms_per_contact']} ms, {erasure['stream_pass_contacts']} measured); "
            f"with the keyspace SCANs: {erasure['scan_ms_per_contact']:,} ms per contact",
        )
    ]
    if "batch_scan_s" in erasure:
        rows.append(
            (
                name,
                f"with the keyspace SCANs ({erasure['scan_keys']:,} keys), one batch: seconds for all",
                f"{erasure['batch_scan_s']} s ({erasure['batch_scan_ms_per_contact']} ms)",
                f"one by one: {erasure['scan_s_for_all']:,} s ({erasure['scan_ms_per_contact']:,} ms, "
                f"{erasure['scan_contacts']} measured)",
            )
        )
    return rows


def corrections_rows(corrections: dict[str, Any] | None) -> list[tuple[str, str, str, str]]:
    """`corrections`: a correction job's update calls against the Rokt limit alone, and the
    limit's split between a journey's creates and the job beside it; each beside its goal."""
    if not corrections:
        return []
    alone, beside = corrections["alone"], corrections["beside_journey"]
    name = (
        f"corrections{_measured(corrections, 'corrections')}, {corrections['held_events']:,} sent events, "
        f"{corrections['limit_per_s']:g}/s for {corrections['window_s']} s"
    )
    return [
        (
            name,
            "the job alone: update calls ÷ limit · max in 1 s · windows over · 429s",
            f"{_limited(alone)} · {alone['throttled_429']}",
            f"goal ≥ 0.9 · 0 windows over; limiter's rate {corrections['limiter_rate_per_s']:g}/s",
        ),
        (
            name,
            "beside a journey: creates' share · the job's share · windows over · 429s",
            f"{beside['creates_share']:g} · {beside['job_share']:g} · {beside['windows_over_limit']} · "
            f"{beside['throttled_429']}",
            f"goal: creates ≥ {corrections['create_share_setting']:g} (EVENT_JOB_SHARE)",
        ),
    ]


def worker_loss_rows(loss: dict[str, Any] | None) -> list[tuple[str, str, str, str]]:
    """`worker_loss`: a whole worker instance SIGKILLed mid-run, RabbitMQ (ours) beside Redis."""
    if not loss:
        return []
    redis, amqp = loss["redis"], loss["rabbitmq"]
    ours = (
        f"RabbitMQ: {amqp['seconds']} s ({amqp['how']}, {amqp['held']} held) · lost {amqp['lost']} · "
        f"twice {amqp['duplicates']}"
        if amqp.get("seconds") is not None
        else "RabbitMQ not reachable: not measured"
    )
    baseline = (
        f"Redis: {redis['seconds']} s ({redis['how']}, {redis['held']} held; re-drive after "
        f"{loss['reconcile_queued_after_s']:g} s, visibility timeout {loss['visibility_timeout_s']} s) · "
        f"lost {redis['lost']} · twice {redis['duplicates']}"
    )
    return [
        (
            f"worker_loss, 1 of {loss['instances']} SIGKILLed, {loss['executions']:,} executions",
            "seconds until all it held is terminal · lost · sent twice",
            ours,
            baseline,
        )
    ]


def tenants_rows(tenants: dict[str, Any] | None) -> list[tuple[str, str, str, str]]:
    """`tenants`: 20 tenants at 50/s each behind 150 ms of Rokt latency, on split workers."""
    if not tenants:
        return []
    label = f"tenants, {tenants['tenants']} x 50/s, Rokt +{tenants['rokt_latency_ms']} ms"
    return [
        (
            label,
            "contacts/s · worker CPU per contact",
            f"{tenants['contacts_per_s']} · {tenants['cpu_ms_per_contact']} ms",
            f"one prefork worker: {tenants['baseline_prefork_contacts_per_s']} · "
            f"{tenants['baseline_prefork_cpu_ms_per_contact']} ms",
        ),
        (
            label,
            "reschedules per Rokt call · Rokt 429s",
            f"{tenants['reschedules_per_rokt_call']} · {tenants['rokt_429s']}",
            "",
        ),
        (
            label,
            "B's queue wait behind A p50 · p99 (ms)",
            f"{tenants['b_wait_p50_ms']} · {tenants['b_wait_p99_ms']}",
            f"B alone: {tenants['b_alone_wait_p50_ms']} · {tenants['b_alone_wait_p99_ms']}",
        ),
        (
            label,
            "B's claim to Rokt 202 behind A p50 · p99 (ms)",
            f"{tenants['b_accepted_p50_ms']} · {tenants['b_accepted_p99_ms']}",
            f"B alone p50: {tenants['b_alone_accepted_p50_ms']}",
        ),
        *(
            (
                f"tenants, {b['tenants']} tenants' Rokt backlog, "
                f"ROKT_LIMIT_SLEEP_MS={key.split('_')[-1][:-2]}",
                "Rokt calls/s · reschedules per call · 429s",
                f"{b['rokt_calls_per_s']} · {b['reschedules_per_rokt_call']} · {b['rokt_429s']}",
                f"limiters' rate {b['limit_per_s']:g}/s",
            )
            for key, b in tenants.items()
            if key.startswith("backlog_sleep_")
        ),
    ]


def machine_line(results: dict[str, Any]) -> str:
    m = results["machine"]
    return (
        f"Measured {m['date'][:10]} at commit `{m['git_commit'][:10]}` on {m['cores']} cores ({m['cpu']}), "
        f"{m['memory_gb']} GB, Python {m['python']}, Redis {m['redis']}, {m['load_generator']}"
        f"{' (BENCH_QUICK)' if results.get('quick') else ''}.\n"
    )


def _http(figures: dict[str, Any]) -> str:
    return f"{figures['rps']:g} · {figures['p50_ms']:g} · {figures['p99_ms']:g}"


def _limited(figures: dict[str, Any]) -> str:
    return f"{figures['utilization']:g} · {figures['max_in_any_1s_window']} · {figures['windows_over_limit']}"


def _waits(figures: dict[str, Any]) -> str:
    return f"{figures['p50_ms']} · {figures['p99_ms']}"


if __name__ == "__main__":
    # python -m bench.markdown [results.json]: print the table (`make docs` writes it to docs/)
    data = json.loads(Path(sys.argv[1] if len(sys.argv) > 1 else RESULTS).read_text())
    sys.stdout.write(machine_line(data) + "\n" + performance_table(data))
