"""Rokt Calendar webhook receiver: authenticate, validate, deduplicate, enqueue, 200."""

from __future__ import annotations

import json
import logging
import time

import redis
from flask import Blueprint, current_app, jsonify, request
from marshmallow import ValidationError

from pipeline import logsetup
from pipeline.logsafe import mask
from pipeline.runtime import Runtime
from pipeline.vocabulary import TenantStatus
from pipeline.web.errors import ApiError
from pipeline.web.webhook_auth import SIGNATURE_HEADER, verify_header, verify_path_secret
from pipeline.webhooks import claim_webhook, release_webhook
from schemas.rokt_webhook import KNOWN_TYPES, EnvelopeSchema

log = logging.getLogger(__name__)
webhooks = Blueprint("webhooks", __name__, url_prefix="/t/<tenant>/webhooks")

ENVELOPE_SCHEMA = EnvelopeSchema()


@webhooks.post("/rokt")
@webhooks.post("/rokt/<path_secret>")
def rokt(tenant: str, path_secret: str | None = None):
    rt: Runtime = current_app.extensions["rsf.runtime"]
    config = rt.registry.get(tenant)
    if config is None:
        raise ApiError(404, "not_found", f"unknown tenant {tenant!r}")
    secrets = config.webhook_secrets(time.time())  # after a rotation, the previous one for a while
    if not secrets:
        raise ApiError(503, "not_configured", "tenant has no webhook secret configured")
    raw = request.get_data(cache=False)
    if path_secret is not None:
        if not any(verify_path_secret(path_secret, secret) for secret in secrets):
            raise ApiError(401, "unauthorized", "webhook secret does not match")
    else:
        header = request.headers.get(SIGNATURE_HEADER)
        problems = [verify_header(header, raw, secret) for secret in secrets]
        if all(problems):
            raise ApiError(401, "unauthorized", problems[0] or "")
    logsetup.remember_tenant_secrets(config)
    if config.status == TenantStatus.DISABLED:  # Rokt retries a 503: nothing is lost meanwhile
        raise ApiError(503, "tenant_disabled", "tenant is disabled; retry later")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "invalid_json", "body is not JSON") from exc
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
        if not claim_webhook(rt.redis, tenant, envelope):
            _log_accepted(envelope, duplicate=True)
            return jsonify(ok=True, duplicate=True)
    except redis.RedisError as exc:
        log.exception("webhook store unavailable")
        raise ApiError(503, "unavailable", "store unavailable; retry") from exc
    try:
        dispatch(tenant, envelope["eventId"])
    except Exception as exc:  # any broker failure: let Rokt's retry deliver it again
        log.exception("enqueue failed for webhook %s", envelope["eventId"])
        try:
            release_webhook(rt.redis, tenant, envelope["eventId"])
        except redis.RedisError:
            log.exception("could not release webhook claim %s", envelope["eventId"])
        raise ApiError(503, "unavailable", "queue unavailable; retry") from exc
    _log_accepted(envelope, duplicate=False)
    return jsonify(ok=True)


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
