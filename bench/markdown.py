"""The README's Performance table, rendered from results.json (`python -m bench.markdown`);
a docs test keeps the README's copy equal to the committed results."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).with_name("results.json")
README = Path(__file__).resolve().parent.parent / "README.md"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def performance_table(results: dict[str, Any]) -> str:
    rows = [("benchmark", "figure", "rokt-sfmc", "baseline (same run)"), ("---",) * 4]
    intake = results.get("intake")
    if intake:
        for level in ("c1", "c10", "c50"):
            ours, bare = intake["execute"][level], intake["bare_flask"][level]
            rows.append(
                (
                    f"intake, {level[1:]} connection{'' if level == 'c1' else 's'}",
                    "rps · p50 · p99 (ms)",
                    _http(ours),
                    f"bare Flask {_http(bare)}",
                )
            )
        rows.append(("intake", "execute rps ÷ bare rps at 50", str(intake["ratio"]), ""))
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
    return "\n".join("| " + " | ".join(row) + " |" for row in rows) + "\n"


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


def readme_section(results: dict[str, Any]) -> str:
    return f"{BEGIN}\n{machine_line(results)}\n{performance_table(results)}{END}"


def update_readme(results: dict[str, Any], readme: Path = README) -> None:
    text = readme.read_text()
    start, end = text.index(BEGIN), text.index(END) + len(END)
    readme.write_text(text[:start] + readme_section(results) + text[end:])


if __name__ == "__main__":
    # python -m bench.markdown [results.json] [--readme]: print the table, or write it into README.md
    args = [a for a in sys.argv[1:] if a != "--readme"]
    data = json.loads(Path(args[0] if args else RESULTS).read_text())
    if "--readme" in sys.argv:
        update_readme(data)
        print(f"README.md Performance table updated from {args[0] if args else RESULTS}")
    else:
        sys.stdout.write(machine_line(data) + "\n" + performance_table(data))
