"""Rokt Calendar webhook receiver: authenticate, validate, deduplicate, enqueue, 200."""

from __future__ import annotations

import logging
import time

import redis
from flask import Blueprint, current_app, jsonify, request
from marshmallow import ValidationError

from pipeline.infra import logsetup
from pipeline.infra.logsafe import mask
from pipeline.infra.redis_clients import refused_for_memory
from pipeline.settings import Tenant
from pipeline.subscriptions.webhooks import claim_webhook, receipt_ttl_seconds, release_webhook
from pipeline.tenancy.handles import Runtime
from pipeline.vocabulary import TenantStatus
from pipeline.web.auth_failures import record_failure, refuse_if_limited
from pipeline.web.errors import ApiError, parse_json, unavailable
from pipeline.web.webhook_auth import SIGNATURE_HEADER, verify_header, verify_path_secret
from schemas.rokt_webhook import KNOWN_TYPES, EnvelopeSchema

log = logging.getLogger(__name__)
webhooks = Blueprint("webhooks", __name__, url_prefix="/t/<tenant>/webhooks")

ENVELOPE_SCHEMA = EnvelopeSchema()


@webhooks.post("/rokt")
@webhooks.post("/rokt/<path_token>")
def rokt(tenant: str, path_token: str | None = None):
    """An unknown tenant, a tenant without the credential and a wrong credential all answer
    401 `unauthorized` alike (the reason is logged); repeated failures from one address 429."""
    rt: Runtime = current_app.extensions["rsf.runtime"]
    config = rt.registry.get(tenant)
    refuse_if_limited(config.name if config else None, "webhook")
    raw = request.get_data(cache=False)
    problem = _authentication_problem(config, path_token, raw)
    if problem or config is None:
        raise record_failure(config.name if config else None, "webhook", problem)
    logsetup.remember_tenant_secrets(config)
    if config.status == TenantStatus.DISABLED:  # Rokt retries a 503: nothing is lost meanwhile
        raise ApiError(503, "tenant_disabled", "tenant is disabled; retry later")
    body = parse_json(raw)  # 400 when not JSON or nested too deep
    if not isinstance(body, dict):
        raise ApiError(
            400, "invalid_payload", "body must be a JSON object", fields={"_schema": ["not an object"]}
        )
    try:
        envelope = ENVELOPE_SCHEMA.load(body)
    except ValidationError as exc:
        raise ApiError(400, "invalid_payload", "webhook envelope rejected", fields=exc.messages) from exc
    logsetup.bind(eventId=envelope["eventId"])  # the request's context, reset when it ends
    if envelope["eventType"] not in KNOWN_TYPES:
        log.info("ignoring webhook %s of unknown type %r", envelope["eventId"], envelope["eventType"])
        return jsonify(ok=True, ignored=True)
    dispatch = current_app.extensions["rsf.enqueue_webhook"]
    try:
        if not claim_webhook(rt.redis, tenant, envelope, ttl_seconds=receipt_ttl_seconds(rt.settings)):
            _log_accepted(envelope, duplicate=True)
            return jsonify(ok=True, duplicate=True)
    except redis.RedisError as exc:
        raise unavailable(exc, "the webhook's receipt") from exc
    try:
        dispatch(tenant, envelope["eventId"])
    except Exception as exc:  # any broker failure: let Rokt's retry deliver it again
        try:  # a delete: a full Redis accepts it, so the retry is not taken for a duplicate
            release_webhook(rt.redis, tenant, envelope["eventId"])
        except redis.RedisError:
            log.exception("could not release webhook claim %s", envelope["eventId"])
        if refused_for_memory(exc):
            raise unavailable(exc, "the webhook's enqueue") from exc
        log.exception("enqueue failed for webhook %s", envelope["eventId"])
        raise ApiError(503, "unavailable", "queue unavailable; retry") from exc
    _log_accepted(envelope, duplicate=False)
    return jsonify(ok=True)


def _authentication_problem(config: Tenant | None, path_token: str | None, raw: bytes) -> str:
    """Why this request is not authenticated ("" when it is): the URL's path token (path mode)
    or the X-Rokt-Signature HMAC with the webhook secret, each current or within its grace."""
    if config is None:
        return "unknown tenant"
    now = time.time()  # after a rotation, the previous secret and token are accepted for a while
    if path_token is not None:
        tokens = config.webhook_path_tokens(now)
        if not tokens:
            return "path mode off or no path token configured"
        if not any(verify_path_secret(path_token, token) for token in tokens):
            return "path token does not match"
        return ""
    secrets = config.webhook_secrets(now)
    if not secrets:
        return "no webhook secret configured"
    problems = [verify_header(request.headers.get(SIGNATURE_HEADER), raw, secret) for secret in secrets]
    return (problems[0] or "") if all(problems) else ""


def _log_accepted(envelope: dict, *, duplicate: bool) -> None:
    """One INFO line per accepted webhook (tenant, request id and eventId from the context);
    the subscriber, when the webhook names one, only masked."""
    subscription = (envelope.get("eventDetails") or {}).get("subscription")
    subscriber = None
    if isinstance(subscription, dict):
        subscriber = subscription.get("subscriberId") or subscription.get("emailAddress")
    fields = {"eventType": envelope["eventType"], "duplicate": duplicate}
    if subscriber:
        fields["contactKey"] = mask(subscriber)
    log.info(
        "webhook accepted: %s %s%s (%s)",
        envelope["eventType"],
        envelope["eventId"],
        f" for {fields['contactKey']}" if subscriber else "",
        "duplicate" if duplicate else "queued",
        extra=fields,
    )
