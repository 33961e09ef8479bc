"""Journey Builder's execute call, once per contact: verify the JWT, validate, claim, answer.

It shares the activity's URL prefix (`/t/<tenant>/activity/execute`, what config.json names)
and nothing else: no page, so no framing policy; the claim is all the work it does.
"""

from __future__ import annotations

import logging
import time

import redis
from flask import Blueprint, current_app, jsonify, request
from marshmallow import ValidationError

from pipeline.infra import logsetup
from pipeline.infra.logsafe import mask
from pipeline.infra.replica_wait import replicated
from pipeline.journeys.executions import new_execution
from pipeline.tenancy.handles import Runtime
from pipeline.vocabulary import TenantStatus
from pipeline.web.auth_failures import record_failure, refuse_if_limited
from pipeline.web.errors import MAX_JSON_DEPTH, ApiError, unavailable
from pipeline.web.jwt_auth import InvalidJwt, JwtPayloadTooDeep, verify_execute_jwt
from schemas.jb_execute import ExecuteSchema

log = logging.getLogger(__name__)
execute_endpoint = Blueprint("execute", __name__, url_prefix="/t/<tenant>/activity")

EXECUTE_SCHEMA = ExecuteSchema()


def _runtime() -> Runtime:
    return current_app.extensions["rsf.runtime"]


@execute_endpoint.post("/execute")
def execute(tenant: str):
    """Verify, validate, claim: the claim stores the execution and appends it to the tenant's
    intake stream in one Redis call, and a pump (pipeline/journeys/intake.py) publishes its render task,
    so execute never waits for the broker, and answers 200 while the broker is down.

    An unknown tenant, a tenant without a signing secret and a JWT that does not verify all
    answer 401 `unauthorized` alike (the reason is logged); repeated failures from one address 429."""
    config = _runtime().registry.get(tenant)
    refuse_if_limited(config.name if config else None, "execute")
    raw = request.get_data(cache=False)
    if config is None:
        raise record_failure(None, "execute", "unknown tenant")
    try:
        claims = verify_execute_jwt(raw, config.jwt_secrets(time.time()))
    except InvalidJwt as exc:
        raise record_failure(config.name, "execute", exc.reason) from exc
    except JwtPayloadTooDeep as exc:
        message = f"JWT payload nested deeper than {MAX_JSON_DEPTH} levels"
        raise ApiError(400, "invalid_payload", message) from exc
    try:
        payload = EXECUTE_SCHEMA.load(claims)
    except ValidationError as exc:
        raise ApiError(400, "invalid_payload", "execute payload rejected", fields=exc.messages) from exc
    if config.status != TenantStatus.ACTIVE:  # told only to a caller holding the signing secret
        raise ApiError(503, "tenant_" + config.status, f"tenant is {config.status}; retry later")

    logsetup.remember_tenant_secrets(config)
    execution, record = new_execution(payload)
    logsetup.bind(executionId=execution)  # the request's context, reset when it ends
    answer = {"roktStatus": "queued", "roktEventId": record["eventId"], "executionId": execution}
    rt = _runtime()
    try:  # stored and appended to the tenant's intake stream in one script: the pump enqueues it
        claimed = rt.ledger.claim(tenant, execution, record)
    except redis.RedisError as exc:  # one script: refused whole, nothing half-written
        raise unavailable(exc, "execute's claim") from exc
    if not replicated(rt.redis, tenant, rt.settings.redis_wait_replicas, rt.settings.redis_wait_timeout_ms):
        raise ApiError(503, "not_replicated", "not yet on enough Redis replicas (kept); retry")
    log.info(
        "execute accepted: execution %s for %s (%s)",
        execution,
        mask(payload["keyValue"]),
        "queued" if claimed else "duplicate",
        extra={"contactKey": mask(payload["keyValue"]), "duplicate": not claimed},
    )
    return jsonify(answer)
