"""Journey Builder custom activity endpoints: config.json, lifecycle calls and execute."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import redis
from flask import Blueprint, current_app, jsonify, request, send_from_directory
from marshmallow import ValidationError

from pipeline.executions import new_execution
from pipeline.logsafe import mask
from pipeline.runtime import Runtime
from pipeline.settings import Tenant
from pipeline.templates import TemplateNotFound, get_template
from pipeline.web.errors import ApiError
from pipeline.web.jwt_auth import InvalidJwt, verify_execute_jwt
from schemas.jb_execute import ExecuteSchema, merge_in_arguments

log = logging.getLogger(__name__)
activity = Blueprint("activity", __name__, url_prefix="/t/<tenant>/activity")

EXECUTE_SCHEMA = ExecuteSchema()
# The files Journey Builder loads into its iframe: the UI, the icons and the vendored Postmonger.
STATIC_ROOT = Path(__file__).resolve().parent / "static" / "activity"


def _runtime() -> Runtime:
    return current_app.extensions["rsf.runtime"]


def _tenant(name: str) -> Tenant:
    tenant = _runtime().settings.tenant(name)
    if tenant is None:
        raise ApiError(404, "not_found", f"unknown tenant {name!r}")
    return tenant


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
                }
            },
            "arguments": {
                "execute": {
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
            "userInterfaces": {"configInspector": {"size": "scm-lg", "emptyIframe": True}},
            "schema": {
                "arguments": {
                    "execute": {
                        "inArguments": [
                            {
                                "templateId": {
                                    "dataType": "Text",
                                    "isNullable": False,
                                    "direction": "in",
                                    "access": "visible",
                                }
                            }
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


def _lifecycle_body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    return body if isinstance(body, dict) else {}


@activity.post("/save")
@activity.post("/publish")
@activity.post("/stop")
def lifecycle(tenant: str):
    """Unauthenticated in practice (JB sends no JWT here), so they change nothing."""
    _tenant(tenant)
    return jsonify(ok=True)


@activity.post("/validate")
def validate(tenant: str):
    """Check what can be checked without a JWT: tenant credentials and a named template."""
    config = _tenant(tenant)
    problems: dict[str, str] = {}
    for name in ("jb_jwt_secret", "rokt_client_id", "rokt_account_code", "sfmc_client_id"):
        if not getattr(config, name):
            problems[name] = "not configured for this tenant"
    body = _lifecycle_body()
    execute = (body.get("arguments") or {}).get("execute") or {}
    template_id = merge_in_arguments(
        [a for a in execute.get("inArguments") or [] if isinstance(a, dict)]
    ).get("templateId")
    if template_id:
        try:
            get_template(_runtime().redis, tenant, str(template_id))
        except TemplateNotFound as exc:
            problems["templateId"] = str(exc)
    if problems:
        raise ApiError(400, "invalid_configuration", "activity cannot run", fields=problems)
    return jsonify(ok=True)


@activity.post("/execute")
def execute(tenant: str):
    config = _tenant(tenant)
    if not config.jb_jwt_secret:
        raise ApiError(503, "not_configured", "tenant has no JWT signing secret configured")
    try:
        claims = verify_execute_jwt(request.get_data(cache=False), config.jb_jwt_secret)
    except InvalidJwt as exc:
        raise ApiError(401, "invalid_jwt", exc.reason) from exc
    try:
        payload = EXECUTE_SCHEMA.load(claims)
    except ValidationError as exc:
        raise ApiError(400, "invalid_payload", "execute payload rejected", fields=exc.messages) from exc

    execution, record = new_execution(payload)
    answer = {"roktStatus": "queued", "roktEventId": record["eventId"], "executionId": execution}
    rt = _runtime()
    try:
        claimed = rt.ledger.claim(tenant, execution, record)
    except redis.RedisError as exc:
        log.exception("ledger unavailable; execute for %s refused", mask(payload["keyValue"]))
        raise ApiError(503, "unavailable", "store unavailable; retry") from exc
    if claimed:
        try:
            current_app.extensions["rsf.enqueue"](tenant, execution)
        except Exception as exc:  # any broker failure: undo the claim so the JB retry can enqueue
            log.exception("enqueue failed for execution %s", execution)
            try:
                rt.ledger.release_claim(tenant, execution)
            except redis.RedisError:
                log.exception("could not release claim of %s", execution)
            raise ApiError(503, "unavailable", "queue unavailable; retry") from exc
    return jsonify(answer)


@activity.get("/<path:filename>")
def static_file(tenant: str, filename: str):
    """The UI's files, served from our origin (never a CDN); nothing outside STATIC_ROOT."""
    _tenant(tenant)
    return send_from_directory(STATIC_ROOT, filename, max_age=300)
