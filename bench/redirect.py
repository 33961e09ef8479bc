"""`redirect`: the tracked-link redirect (`GET /t/<tenant>/c/<token>`) under gunicorn, beside a
bare Flask endpoint on the same path that answers a fixed 302 (bench/bare_app.py), under the
identical gunicorn configuration, at 1, 10 and 50 connections. Goal: >= 0.5 of the bare
endpoint's requests per second (issue 25).

Every request is a click that counts: distinct tracked links of `EXECUTIONS` executions rendered
by the real render step (a `trackClicks` template, two links each) and sent, requested round robin
by wrk (a browser's User-Agent, so nothing is taken for a previewer). Each one verifies the token,
reads the record's links (one HMGET) and runs the click script (the execution's counts, the day's
figures, a status row and a history entry). The records stay whole in Redis (not archived): the
path of a click on a record archived to the history store adds a store read and a restore, once
per execution until it is archived again (docs/activity.md, Tracked links). Afterwards the
benchmark checks the counts: clicks counted on the records = 302s answered (`uncounted` must be 0).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

from bench.harness import reset
from bench.intake import WEB_WORKERS, WRK_DONE, _wrk, wrk_version
from bench.procs import cpu_seconds
from pipeline.infra import keys
from pipeline.journeys import executions
from pipeline.journeys.templates import create_template
from pipeline.sandbox import jbsim, processes
from pipeline.sandbox.stack import Stack
from pipeline.stores.ledger import event_id_for, execution_id
from pipeline.vocabulary import State

TENANT = "bench"
CONCURRENCY = (1, 10, 50)
EXECUTIONS = 2_000
BARE_APP = "bench.bare_app:app"
TEMPLATE = {
    **jbsim.DEMO_TEMPLATE,
    "description": "Our sale: https://brand.example/sale?x=1 and the app https://brand.example/app",
    "location": "Swipe now https://brand.example/sale?x=1",
    "trackClicks": True,
}
TOKEN_PATH = re.compile(r"/t/[^/\s]+/c/[A-Za-z0-9_-]{32}")
BROWSER = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148"

WRK_SCRIPT = (
    r"""
-- args: paths file. Every request is the next path (each thread starts at another place).
-- wrk counts a 302 as a success (its non_2xx: statuses of 400 and more).
local counter = 0
function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
end
function init(args)
  paths = {}
  for line in io.lines(args[1]) do paths[#paths + 1] = line end
  idx = tid * 997
  wrk.headers["User-Agent"] = "BROWSER_UA"
end
function request()
  idx = idx % #paths + 1
  return wrk.format("GET", paths[idx])
end
"""
    + WRK_DONE
).replace("BROWSER_UA", BROWSER)


def run(stack: Stack, quick: bool) -> dict[str, dict[str, Any]]:
    if not shutil.which("wrk"):
        raise SystemExit("wrk not found: `make bench` installs it (apt-get install wrk)")
    seconds = 4 if quick else 15
    reset(stack)
    paths, ids = _tracked_links(stack, EXECUTIONS // 4 if quick else EXECUTIONS)
    script = stack.run_dir / "redirect.lua"
    script.write_text(WRK_SCRIPT)
    measured, warm_up = {}, {}
    for name, app in (("redirect", processes.WEB_APP), ("bare_flask", BARE_APP)):
        measured[name], warm_up[name] = _levels(stack, app, script, paths, seconds)
    counted = sum(int(stack.redis.hget(keys.execution(TENANT, ex), "clicks") or 0) for ex in ids)
    answered = warm_up["redirect"] + sum(
        level["requests"] - level["non_2xx"] for level in measured["redirect"].values()
    )
    figures: dict[str, Any] = {
        "load_generator": wrk_version(),
        "gunicorn": f"--workers {WEB_WORKERS} --worker-class gthread --threads 16",
        "seconds_per_level": seconds,
        "tracked_links": sum(1 for _ in paths.open()),
        **{name: {f"c{c}": levels[c] for c in CONCURRENCY} for name, levels in measured.items()},
    }
    top = f"c{CONCURRENCY[-1]}"
    ours, bare = figures["redirect"][top], figures["bare_flask"][top]
    figures["ratio"] = round(ours["rps"] / bare["rps"], 3)
    figures["p99_ratio"] = round(ours["p99_ms"] / bare["p99_ms"], 3)
    figures["clicks_counted"] = counted
    figures["uncounted"] = max(0, answered - counted)
    return {"redirect": figures}


def _tracked_links(stack: Stack, count: int) -> tuple[Path, list[str]]:
    """`count` executions of a tracked template rendered and sent; the file of their links' paths."""
    rt = stack.runtime
    template = create_template(stack.redis, TENANT, TEMPLATE)["id"]
    lines, ids = [], []
    for index in range(count):
        ex = execution_id("bench-redirect", str(index))
        args = {"templateId": template, "subscriptionId": f"s{index}", "FirstName": "Ava"}
        record = {"contactKey": f"R{index:07d}", "eventId": event_id_for(ex), "activityId": "bench-redirect"}
        rt.ledger.claim(TENANT, ex, {**record, "args": args})
        if not executions.render_step(rt, TENANT, ex):
            raise RuntimeError(f"the render step did not render execution {ex}")
        rt.ledger.transition(TENANT, ex, State.ACCEPTED)
        event = json.loads(rt.ledger.get(TENANT, ex).fields["event"])
        lines.extend(dict.fromkeys(TOKEN_PATH.findall(event["description"] + " " + event["location"])))
        ids.append(ex)
    stack.redis.delete(keys.intake(TENANT))  # no pump runs: the claims' entries are not the point
    path = stack.run_dir / "redirect-paths.txt"
    path.write_text("\n".join(lines) + "\n")
    return path, ids


def _levels(stack: Stack, app: str, script: Path, paths: Path, seconds: int) -> tuple[dict[int, Any], int]:
    """`app` under gunicorn, warmed up (1 s at 10 connections), then wrk at each level; the
    figures per level and the redirects the warm-up was answered."""
    port = processes.free_port()
    # every request a counted click (the dearest path): no repeat window
    env = {**stack.env, "CLICK_REPEAT_SECONDS": "0"}
    web = processes.start_web(stack.run_dir, env, port, WEB_WORKERS, app=app)
    measured: dict[int, dict[str, Any]] = {}
    try:
        url = f"http://127.0.0.1:{port}/"
        warm = _wrk(url, script, paths, 10, 1)  # imports, connection pools, caches
        for connections in CONCURRENCY:
            web_cpu = cpu_seconds([web.pid])
            figures = _wrk(url, script, paths, connections, seconds)
            figures.pop("repeated_executions", None)
            used = cpu_seconds([web.pid]) - web_cpu
            figures["web_cpu_ms_per_request"] = round(used * 1000 / max(1, figures["requests"]), 3)
            measured[connections] = figures
    finally:
        web.stop()
    return measured, warm["requests"] - warm["non_2xx"]
