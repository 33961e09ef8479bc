"""Journey Builder custom activity endpoints: the UI and its files, config.json, settings.json
and the lifecycle calls (execute, called once per contact, is `pipeline.web.execute`).

Every GET answer of this blueprint (the UI, its static files, config.json, settings.json) says
who may frame it: `Content-Security-Policy: frame-ancestors` built from `JB_ALLOWED_ORIGINS` on the
tenant's own stack (`pipeline.web.origins.frame_origins`), never `X-Frame-Options` (which cannot name
Journey Builder's per-stack origin).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import redis
from flask import Blueprint, Response, current_app, jsonify, request, send_from_directory

from pipeline.infra import dispatch, keys
from pipeline.journeys.templates import TemplateNotFound, get_template
from pipeline.settings import Tenant
from pipeline.tenancy.handles import Runtime
from pipeline.web.errors import ApiError
from pipeline.web.origins import frame_origins, page_policy
from schemas.jb_execute import merge_in_arguments, release_problems

log = logging.getLogger(__name__)
activity = Blueprint("activity", __name__, url_prefix="/t/<tenant>/activity")

# The files Journey Builder loads into its iframe: the UI, the icons and the vendored Postmonger.
STATIC_ROOT = Path(__file__).resolve().parent / "static" / "activity"
# a journey version's stop is looked into once in this long (JB may call stop more than once),
# and at most this many stops of one activity wait for SFMC's answer at once (an unauthenticated
# caller naming made-up journeys fills no more than that; each is dropped once SFMC denies it)
JOURNEY_STOP_MARK_SECONDS = 86400
JOURNEY_STOPS_PENDING_MAX = 10
# KEYS: the activity's stops; ARGV: `<definition>:<version>`, most pending, seconds kept. 1: asked now.
_ASK_ONCE = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 0 end
local pending = 0
for _, state in ipairs(redis.call('HVALS', KEYS[1])) do
  if state == 'pending' then pending = pending + 1 end
end
if pending >= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], 'pending')
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
return 1
"""


def _runtime() -> Runtime:
    return current_app.extensions["rsf.runtime"]


@activity.after_request
def _framing(response: Response) -> Response:
    """The UI and its files may be framed by the tenant's own Journey Builder only (execute/save/
    validate JSON answers are no page: they carry no policy; an unknown tenant's 404: any stack's)."""
    if request.method in ("GET", "HEAD"):
        name = (request.view_args or {}).get("tenant")
        try:
            tenant = _runtime().registry.get(str(name)) if name else None
        except redis.RedisError:  # the answer still goes out framed, by any stack's Journey Builder
            tenant = None
        response.headers["Content-Security-Policy"] = page_policy(_jb_origins(tenant))
    response.headers.pop("X-Frame-Options", None)
    return response


def _jb_origins(tenant: Tenant | None) -> tuple[str, ...]:
    return frame_origins(_runtime().settings.jb_allowed_origins, tenant)


def _tenant(name: str) -> Tenant:
    tenant = _runtime().registry.get(name)
    if tenant is None:
        raise ApiError(404, "not_found", f"unknown tenant {name!r}")
    return tenant


# The fixed inArguments the UI saves (docs/http-contract.md, in this order), as config.json declares them.
# Placeholder inArguments (one per `{{Placeholder}}` of the chosen template, keyed by its name)
# are per template, so they cannot be declared here: the schema names only the fixed keys.
FIXED_IN_ARGUMENTS: tuple[tuple[str, bool], ...] = (
    ("contactKey", False),
    ("templateId", False),
    ("subscriptionId", True),  # "" or absent: the worker looks the contact's live subscriptions up
    ("releaseEventDefinitionKey", True),  # "" : no "Wait Until API Event" to release
    ("releaseOn", True),  # accepted | confirmed; absent: accepted
    ("releaseAfterSeconds", True),  # whole seconds as a string; absent: 3600
)
# The configModal's wizard, the UI's three steps (keys the UI answers `gotoStep` with).
WIZARD_STEPS = (
    ("event", "Choose or create the event"),
    ("fields", "Map fields"),
    ("review", "Review"),
)


@activity.get("/config.json")
def config_json(tenant: str):
    _tenant(tenant)
    base = f"{_runtime().settings.public_base_url}/t/{tenant}/activity"
    out = ("roktStatus", "roktEventId", "executionId")
    return jsonify(
        {
            "workflowApiVersion": "1.1",
            "metaData": {
                "icon": "images/icon.svg",
                "iconSmall": "images/iconSmall.svg",
                "category": "message",
                "isConfigured": False,
            },
            "type": "REST",
            "lang": {
                "en-US": {
                    "name": "Rokt Calendar Event",
                    "description": "Send a 1:1 Rokt Calendar event to the contact's calendar",
                    "runningHoverButtonLabel": "Live counts",
                }
            },
            "arguments": {
                "execute": {
                    # what an unconfigured activity holds; the UI's save replaces the list
                    "inArguments": [{"contactKey": "{{Contact.Key}}"}],
                    "outArguments": [{name: ""} for name in out],
                    "url": f"{base}/execute",
                    "verb": "POST",
                    "body": "",
                    "header": "",
                    "format": "json",
                    "useJwt": True,
                    # We only validate and enqueue, so 10 s is ample; JB retries timeouts/5xx.
                    "timeout": 10000,
                    "retryCount": 3,
                    "retryDelay": 1000,
                    "concurrentRequests": 50,
                }
            },
            "configurationArguments": {
                step: {"url": f"{base}/{step}"} for step in ("save", "validate", "publish", "stop")
            },
            # configModal, not configInspector: the UI is a three-step wizard (event, field
            # mapping, lock-screen review) whose create form and two-phone preview need the
            # modal's room, and the modal gives JB's own Back/Next footer and step indicator
            # (clickedNext/clickedBack/gotoStep). The page still draws its own Done button and
            # saves from it too, so it also works where JB shows it as an inspector.
            "wizardSteps": [{"key": key, "label": label, "active": True} for key, label in WIZARD_STEPS],
            "userInterfaces": {
                "configModal": {"height": 720, "width": 1000, "fullscreen": False},
                "runningHover": {"url": f"{base}/running.html"},
                "runningModal": {"url": f"{base}/running.html"},
            },
            "schema": {
                "arguments": {
                    "execute": {
                        "inArguments": [
                            {
                                name: {
                                    "dataType": "Text",
                                    "isNullable": nullable,
                                    "direction": "in",
                                    "access": "visible",
                                }
                            }
                            for name, nullable in FIXED_IN_ARGUMENTS
                        ],
                        "outArguments": [
                            {
                                name: {"dataType": "Text", "direction": "out", "access": "visible"}
                                for name in out
                            }
                        ],
                    }
                }
            },
        }
    )


@activity.get("/settings.json")
def settings_json(tenant: str):
    """What the UI needs before Postmonger: its tenant, the API base and the origins allowed to
    frame it (it refuses to start under any other)."""
    answer = jsonify(
        tenant=tenant,
        apiBase=f"/t/{tenant}/api",
        allowedOrigins=list(_jb_origins(_tenant(tenant))),
    )
    answer.headers["Cache-Control"] = "no-store"
    return answer


def _lifecycle_body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    return body if isinstance(body, dict) else {}


@activity.post("/save")
@activity.post("/publish")
def lifecycle(tenant: str):
    """Unauthenticated in practice (JB sends no JWT here), so they change nothing."""
    _tenant(tenant)
    return jsonify(ok=True)


_GUID = re.compile(r"[0-9A-Fa-f]{8}-(?:[0-9A-Fa-f]{4}-){3}[0-9A-Fa-f]{12}")


@activity.post("/stop")
def stop(tenant: str):
    """A journey version was stopped. Unauthenticated in practice (JB sends no JWT here), so its
    word alone changes nothing: for an activity the ledger knows, it asks (once a day at most
    per activity and version) a task to confirm with SFMC that the version is stopped, which
    then cancels the activity's events not yet started when its inArguments opted in
    (`cancelOnStop`). An unknown activity writes nothing."""
    _tenant(tenant)
    body = _lifecycle_body()
    activity_id = str(body.get("activityObjectID") or "")
    definition_id = str(body.get("originalDefinitionId") or body.get("interactionId") or "")
    version = str(body.get("interactionVersion") or "1")
    problems = {
        name: ["Must be a GUID."]
        for name, value in (("activityObjectID", activity_id), ("originalDefinitionId", definition_id))
        if not _GUID.fullmatch(value)
    }
    if not version.isdigit() or len(version) > 6:
        problems["interactionVersion"] = ["Must be a whole number."]
    if problems:
        raise ApiError(400, "invalid_payload", "stop request rejected", fields=problems)
    r = _runtime().redis
    if not r.exists(keys.activity_counts(tenant, activity_id)):
        return jsonify(ok=True)  # no execution of it ever: no event to cancel
    stops = keys.journey_stops(tenant, activity_id)
    asked = r.register_script(_ASK_ONCE)(
        keys=[stops],
        args=[f"{definition_id}:{int(version)}", JOURNEY_STOPS_PENDING_MAX, JOURNEY_STOP_MARK_SECONDS],
    )
    if int(asked):
        dispatch.enqueue_journey_stopped(tenant, activity_id, definition_id, int(version))
    return jsonify(ok=True)


@activity.post("/validate")
def validate(tenant: str):
    """Check what can be checked without a JWT: tenant credentials and, when the body carries
    the activity's inArguments, the saved configuration (template named and existing, release
    options). Journey Builder's own validate call carries only ids (activityObjectID, ...),
    never inArguments (docs/vendors/sfmc-custom-activity.md §2.2): then only the credentials are checked.
    The call is unauthenticated: which settings a tenant lacks is logged, never answered."""
    config = _tenant(tenant)
    problems: dict[str, list[str]] = {}
    missing = _runtime().registry.missing(config.name)
    if missing:
        log.warning("validate: tenant %s cannot run the activity yet; missing %s", tenant, ", ".join(missing))
        problems["tenant"] = ["this tenant is not fully configured yet (see App Settings)"]
    body = _lifecycle_body()
    arguments = body.get("arguments")
    execute = arguments.get("execute") if isinstance(arguments, dict) else None
    in_arguments = execute.get("inArguments") if isinstance(execute, dict) else None
    if in_arguments is not None:
        if not isinstance(in_arguments, list):
            problems["inArguments"] = ["must be a list of objects"]
        else:
            problems.update(_configuration_problems(tenant, [a for a in in_arguments if isinstance(a, dict)]))
    if problems:
        raise ApiError(400, "invalid_configuration", "activity cannot run", fields=problems)
    return jsonify(ok=True)


def _configuration_problems(tenant: str, in_arguments: list[dict[str, Any]]) -> dict[str, list[str]]:
    args = merge_in_arguments(in_arguments)
    problems = release_problems(args)
    template_id = args.get("templateId")
    if not isinstance(template_id, str) or not template_id.strip():
        problems["templateId"] = ["required: the event template to send"]
    else:
        try:
            get_template(_runtime().redis, tenant, template_id.strip())
        except TemplateNotFound as exc:
            problems["templateId"] = [str(exc)]
    return problems


@activity.get("/")
def index(tenant: str):
    """Journey Builder iframes the endpoint root (and some setups `index.html`)."""
    return _ui_file(tenant, "index.html")


@activity.get("/<path:filename>")
def static_file(tenant: str, filename: str):
    """The UI's files, served from our origin (never a CDN); nothing outside STATIC_ROOT.
    config.json and settings.json are their own (static) rules, which win over this one."""
    return _ui_file(tenant, filename)


def _ui_file(tenant: str, filename: str) -> Response:
    _tenant(tenant)
    # pages revalidate every time (a fix reaches open journeys); scripts, styles, icons: 5 min
    max_age = 0 if filename.endswith(".html") else 300
    return send_from_directory(STATIC_ROOT, filename, max_age=max_age)
