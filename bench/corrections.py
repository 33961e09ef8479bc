"""`corrections`: a correction job's update calls against the tenant's Rokt limit, alone and beside
a journey's creates. One tenant with the default Rokt limit (50/s), which the Rokt simulator also
enforces on its account (a strict trailing 1-second window, 429 beyond it); workers split as
compose runs them (worker-render prefork, worker-rokt threads: it serves the event-jobs queue).

- alone: the template of `held` sent events is edited and its correction job started (what
  `PUT .../templates/<id>` with applyToSent does); for `window_s` seconds from its first update
  call, update calls per second against the limit (goal >= 0.9), 1-second windows holding more
  calls than the limit (goal 0) and 429s;
- beside a journey: the same events corrected again while another template's journey, rendered
  beforehand so that only the Rokt stage runs, creates events from a backlog far above the
  limit: creates' share of the limit (goal >= EVENT_JOB_SHARE), the job's share, the
  windows over the limit and 429s, in the `window_s` seconds from the first call.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import requests

from bench.harness import WORKER_CONCURRENCY, reset
from bench.rate_limit import window_figures
from pipeline.infra import dispatch
from pipeline.infra.queues import RENDER_QUEUE, ROKT_WORKER_QUEUES, rokt_queue
from pipeline.journeys import event_jobs
from pipeline.journeys.templates import create_template, update_template
from pipeline.sandbox import jbsim
from pipeline.sandbox.stack import DEFAULT_ROKT_RATE, ROKT_THREADS, Stack
from pipeline.vocabulary import JobKind

TENANT = "corrections"  # bench/harness.py TENANTS: the default Rokt limit, an account of its own
LIMIT = DEFAULT_ROKT_RATE
GOAL_ALONE = 0.9


def run(stack: Stack, quick: bool) -> dict[str, dict[str, Any]]:
    seconds = 10 if quick else 30
    # enough events that the job outlasts the window at the whole limit, and backlog for the
    # creates to outlast it even if they took the whole limit
    held, backlog = int(LIMIT * seconds * 1.2) + 100, int(LIMIT * seconds) + 300
    reset(stack, rokt_rate_limit=LIMIT)
    share = stack.runtime.settings.event_job_share
    figures: dict[str, Any] = {
        "limit_per_s": LIMIT,
        "limiter_rate_per_s": round(1 / stack.runtime.limiter(TENANT, "rokt").emission, 1),
        "window_s": seconds,
        "held_events": held,
        "create_share_setting": share,
    }
    stack.start_split_workers()
    template_id = _sent_events(stack, held)
    figures["alone"] = _alone(stack, template_id, seconds)
    figures["beside_journey"] = _beside_journey(stack, template_id, seconds, backlog, share)
    stack.stop_workers()
    return {"corrections": figures}


def _activity_payloads(
    stack: Stack, template: dict[str, Any], count: int, prefix: str
) -> list[dict[str, Any]]:
    """`count` subscribed contacts seeded at the tenant's Rokt account, and their execute payloads
    for an activity of `template` saved as the UI saves it."""
    contacts = [
        jbsim.Contact(f"{prefix}-{i:07d}", "Ava", f"{prefix}{i}@example.com", "Sydney", True)
        for i in range(count)
    ]
    jbsim.seed_subscriptions(stack.rokt_url, stack.tenant(TENANT).rokt_account_code, contacts)
    activity = stack.saved_activity(TENANT, template["id"])
    return [jbsim.execute_payload(c, activity, f"bench-{uuid.uuid4()}") for c in contacts]


def _template(title: str) -> dict[str, Any]:
    """The demo template on a date far ahead: a correction leaves an event that has ended as it is."""
    return {
        **jbsim.DEMO_TEMPLATE,
        "title": title,
        "start": "2099-06-05T09:00:00",
        "end": "2099-06-05T10:00:00",
    }


def _sent_events(stack: Stack, count: int) -> str:
    """`count` events sent (accepted by Rokt) through the pipeline; returns their template's id."""
    template = create_template(stack.redis, TENANT, _template("{{FirstName}}, the sale starts Friday"))
    stack.enqueue(TENANT, _activity_payloads(stack, template, count, "held"))
    stack.wait(
        lambda: stack.runtime.ledger.open_count(TENANT) == 0, 120 + count / LIMIT * 2, f"{count} events sent"
    )
    return template["id"]


def _correct(stack: Stack, template_id: str, title: str) -> str:
    """What `PUT .../templates/<id>` with applyToSent does: the template edited, its job started."""
    update_template(stack.redis, TENANT, template_id, _template(title))
    job = event_jobs.start_job(
        stack.runtime, TENANT, JobKind.CORRECT, started_by="bench", template_id=template_id
    )
    dispatch.enqueue_event_job_step(TENANT, job.job_id, event_jobs.PLAN)
    return job.job_id


def _first_call_after(stack: Stack, since: float, names: tuple[str, ...], timeout: float = 60) -> float:
    """The simulator's clock (CLOCK_MONOTONIC, shared by this host's processes) at the first
    call of these kinds after `since`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stack.check_alive()
        posts = requests.get(f"{stack.rokt_url}/__sandbox__/posts", timeout=30).json()
        times = [t for name in names for t in posts[name] if t > since]
        if times:
            return min(times)
        time.sleep(0.1)
    raise TimeoutError(f"no {' or '.join(names)} call reached the Rokt simulator")


def _alone(stack: Stack, template_id: str, seconds: int) -> dict[str, Any]:
    """The correction job with nothing else calling Rokt: its update calls in the window."""
    since = time.monotonic()
    job_id = _correct(stack, template_id, "{{FirstName}}, the sale starts Saturday")
    first = _first_call_after(stack, since, ("changes", "throttled_changes"))
    time.sleep(max(0.0, first + seconds + 1 - time.monotonic()))
    posts = requests.get(f"{stack.rokt_url}/__sandbox__/posts", timeout=30).json()
    figures = window_figures(posts["changes"], posts["throttled_changes"], first, seconds, LIMIT)
    figures["goal"] = f">= {GOAL_ALONE} of the limit, 0 windows over"
    # the job ends before the next part (its last updates and its last look)
    stack.wait(lambda: _job(stack, job_id).state == event_jobs.JobState.DONE, 120, "the correction job")
    figures["job_updated"] = _job(stack, job_id).counts.get("updated", 0)
    return figures


def _beside_journey(
    stack: Stack, template_id: str, seconds: int, backlog: int, share: float
) -> dict[str, Any]:
    """Another template's journey rendered beforehand (a render-only worker), then worker-rokt
    starts with its creates queued and a correction of the held events started: what each got
    of the limit in the window from the first call."""
    stack.stop_workers()
    other = create_template(stack.redis, TENANT, _template("{{FirstName}}, new arrivals"))
    stack.start_workers(1, WORKER_CONCURRENCY, queues=[RENDER_QUEUE])
    stack.enqueue(TENANT, _activity_payloads(stack, other, backlog, "journey"))
    stack.wait(
        lambda: stack.redis.llen(rokt_queue(TENANT)) >= backlog,
        60 + backlog / 20,
        f"{backlog} renders",
        interval=0.2,
    )
    stack.stop_workers()
    since = time.monotonic()
    job_id = _correct(stack, template_id, "{{FirstName}}, the sale starts Sunday")
    stack.start_workers(1, ROKT_THREADS, queues=ROKT_WORKER_QUEUES, pool="threads")
    first = _first_call_after(stack, since, ("accepted", "throttled", "changes", "throttled_changes"))
    time.sleep(max(0.0, first + seconds + 1 - time.monotonic()))
    posts = requests.get(f"{stack.rokt_url}/__sandbox__/posts", timeout=30).json()
    creates = window_figures(posts["accepted"], posts["throttled"], first, seconds, LIMIT)
    updates = window_figures(posts["changes"], posts["throttled_changes"], first, seconds, LIMIT)
    calls, refused = posts["accepted"] + posts["changes"], posts["throttled"] + posts["throttled_changes"]
    both = window_figures(calls, refused, first, seconds, LIMIT)
    job = _job(stack, job_id)
    return {
        "creates_share": creates["utilization"],
        "job_share": updates["utilization"],
        "utilization": both["utilization"],
        "creates": creates["accepted"],
        "updates": updates["accepted"],
        "throttled_429": both["throttled_429"],
        "max_in_any_1s_window": both["max_in_any_1s_window"],
        "windows_over_limit": both["windows_over_limit"],
        "job_state_at_end": job.state,
        "goal": f"creates' share >= {share:g}",
    }


def _job(stack: Stack, job_id: str) -> event_jobs.Job:
    job = event_jobs.get_job(stack.redis, TENANT, job_id)
    if job is None:
        raise RuntimeError(f"event job {job_id} is gone")
    return job
