"""App Settings: the page an admin opens in Marketing Cloud (AppExchange > Rokt Calendar).

Server-rendered (templates/app/, static/app/: no CDN). The tenant is always the session's
(`require_app_session`), never a name from the URL or a form, so one account's admin can neither
read nor change another's. Secrets are write-only: the page says "set" or "not set", an empty
input keeps the stored value, and no answer ever carries one, except the new webhook secret,
shown once right after its rotation, and the webhook URL's path token (path mode), which the
admin must copy into Rokt's management centre: it is a bearer token of the URL only, never the
HMAC key. Every POST needs the session's CSRF token.

Edits are never lost to a session: app.js asks `/settings/check` before a form is sent, and a
refusal (a sign-in in another tab gave the session a new token, or the session ended) is said in
plain words beside the button, with a "Sign in again" link; the page keeps the non-secret edits
across that sign-in and puts them back. The refusal itself is unchanged: a forged POST is refused.
Settings are named by their labels (schemas.app_settings.LABELS), never by their keys.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime
from typing import Any

from flask import (
    Blueprint,
    Response,
    current_app,
    g,
    jsonify,
    render_template,
    request,
    session,
    url_for,
)
from marshmallow import ValidationError

from pipeline.clients import tokens
from pipeline.clients.errors import ClientError
from pipeline.infra import keys
from pipeline.settings import Tenant
from pipeline.stores.deadletters import count_dead_letters
from pipeline.subscriptions import dataextensions
from pipeline.tenancy.handles import Runtime
from pipeline.tenancy.tenants import CREDENTIAL_FIELDS, VENDOR_REQUIRED, TenantPinned, UnknownTenant
from pipeline.vocabulary import SfmcAuthMode
from pipeline.web.app_auth import error_page, require_app_session, session_tenant
from pipeline.web.app_session import (
    CSRF_FIELD,
    SESSION_IDLE_SECONDS,
    csrf_ok,
    csrf_refusal,
    csrf_token,
)
from pipeline.web.origins import frame_origins, frame_sources
from schemas.app_settings import LABELS, SECRET_FIELDS, AppSettingsSchema, label

log = logging.getLogger(__name__)
app_settings = Blueprint(
    "app_settings", __name__, url_prefix="/app", static_folder="static/app", static_url_path="/static"
)

SCHEMA = AppSettingsSchema()
FORM_FIELDS = tuple(SCHEMA.fields)
VENDORS = (("rokt", "Rokt"), ("sfmc", "Marketing Cloud"))
# settings without an input, and the input whose change makes them missing
CAUSED_BY = {"sfmc_refresh_token": "sfmc_client_id", "sfmc_auth_base_url": "sfmc_client_id"}
# the Calendar Subscription DE's sendable relationship, as the Contact Builder step links it
CONTACT_KEY_FIELD = "SubscriberExternalId"


def _runtime() -> Runtime:
    return current_app.extensions["rsf.runtime"]


@app_settings.before_request
def _csrf() -> Response | None:
    """SameSite=None cookies ride along on cross-site POSTs: every POST proves it came from our page.
    A refusal still refuses; it only says, in the admin's words, why (`csrf_refusal`)."""
    if request.method == "POST" and not csrf_ok(session):
        reason = csrf_refusal(session, session_tenant() is not None)
        log.warning("app POST %s refused: CSRF %s", request.path, reason)
        saving = request.path == url_for("app_settings.save") or (
            request.path == url_for("app_settings.check_session") and request.args.get("action") == "save"
        )
        title, message = refusal_text(reason, saving=saving)
        return error_page(403, title, message, code=reason, field=CSRF_FIELD)
    return None


def refusal_text(reason: str, *, saving: bool) -> tuple[str, str]:
    """What the admin reads when a POST is refused. The page keeps what was typed (app.js puts it
    back after the sign-in), so the words say how to finish, not "reload"."""
    if saving:
        outcome, then = "Not saved", "Your changes are kept: sign in again, then Save."
    else:
        outcome, then = "Not done", "Your changes in the form are kept: sign in again, then try again."
    if reason == "session_ended":
        return "Your session ended", (
            f"{outcome}: your session ended (you signed out, or the page was left idle "
            f"for {SESSION_IDLE_SECONDS // 3600} hours). {then}"
        )
    if reason == "signed_in_elsewhere":
        return "Signed in again in another tab", (
            f"{outcome}: you signed in again in another tab or window, so this page belongs to "
            f"the earlier sign-in. {then}"
        )
    return "Request refused", f"{outcome}: this request was not sent by the App Settings page."


def _epoch_text(value: Any) -> str:
    try:
        return datetime.fromtimestamp(float(value), UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (TypeError, ValueError, OverflowError):
        return ""


def _last_check(name: str) -> dict[str, Any]:
    raw = _runtime().redis.get(keys.settings_check(name))
    try:
        found = json.loads(raw) if raw else None
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def _forget_checks(name: str, vendors: list[str]) -> None:
    """A vendor's last check says nothing about credentials changed since: dropped, so the Tokens
    row never shows an old "OK" for settings it did not test."""
    check = _last_check(name)
    if check and any(v in check for v in vendors):
        for vendor in vendors:
            check.pop(vendor, None)
        _runtime().redis.set(keys.settings_check(name), json.dumps(check))


def token_rows(check: dict[str, Any]) -> list[dict[str, str]]:
    """The Tokens row: each vendor's latest result with its own time (the page and app.js show
    these texts as they are)."""
    rows = []
    for vendor, title in VENDORS:
        result = check.get(vendor)
        if not isinstance(result, dict):
            why = "not checked since its settings changed" if check else "not checked yet"
            rows.append({"vendor": vendor, "state": "unchecked", "text": f"{title}: {why}"})
            continue
        at = _epoch_text(result.get("checkedAt", check.get("checkedAt")))
        ok = bool(result.get("ok"))
        said = "OK" if ok else f"failed \u2013 {result.get('reason') or 'no reason given'}"
        rows.append(
            {
                "vendor": vendor,
                "state": "ok" if ok else "failed",
                "text": f"{title}: {said}" + (f" (checked {at})" if at else ""),
            }
        )
    return rows


def missing_labels(name: str) -> list[dict[str, str]]:
    """What is still missing, as the form names it (`field` links to the input when it has one)."""
    return [
        {"field": f, "label": label(f), "onForm": f in FORM_FIELDS} for f in _runtime().registry.missing(name)
    ]


def status_panel(tenant: Tenant) -> dict[str, Any]:
    """What the status panel shows; each value read where its owner writes it."""
    rt, name = _runtime(), tenant.name
    check = _last_check(name)
    return {
        "status": str(tenant.status),
        "installed": dataextensions.installed(rt.redis, name),
        "install": dataextensions.install_progress(rt.redis, name),
        # installed before a data extension existed (the performance DE): Install again adds it
        "notInstalled": dataextensions.not_installed(rt.redis, name),
        "lastWebhook": _epoch_text(rt.redis.get(keys.last_webhook(name))),
        "lastExecute": _epoch_text(rt.redis.get(keys.last_execute(name))),
        "tokens": token_rows(check),
        # the dead-letter hash (pipeline.stores.deadletters.record_dead_letter): one entry per item
        "deadLetters": count_dead_letters(rt.redis, name),
        # pipeline/clients/tokens.py, Refusals: SFMC refuses the client secret or the refresh token
        "reconnectReason": (tokens.rejection(rt.redis, name, "sfmc") or {}).get("reason", ""),
        "authMode": str(tenant.sfmc_auth_mode),
        "missing": missing_labels(name),
        "framing": framing_panel(tenant),
    }


def framing_panel(tenant: Tenant) -> dict[str, Any]:
    """Who may frame this tenant's pages, as the browser is told (CSP `frame-ancestors` sources),
    and where that comes from: its `frame_origins` override, its stack, or no stack known yet."""
    settings = _runtime().settings
    return {
        "stack": tenant.sfmc_stack,
        "override": bool(tenant.frame_origins.strip()),
        "app": frame_sources(frame_origins(settings.mc_allowed_origins, tenant)),
        "activity": frame_sources(frame_origins(settings.jb_allowed_origins, tenant)),
    }


def _page(
    tenant: Tenant,
    *,
    status: int = 200,
    form: dict[str, str] | None = None,
    errors: dict[str, list[str]] | None = None,
    saved: bool = False,
    new_webhook_secret: str = "",
) -> Response:
    settings = _runtime().settings
    values = {f: str(getattr(tenant, f, "") or "") for f in FORM_FIELDS if f not in SECRET_FIELDS}
    if form:
        values.update({k: v for k, v in form.items() if k in values})
    response = Response(
        render_template(
            "app/settings.html",
            tenant=tenant,
            user=session.get("user", ""),
            values=values,
            secrets_set={f: bool(getattr(tenant, f)) for f in SECRET_FIELDS},
            webhook_secret_set=bool(tenant.rokt_webhook_secret),
            errors=errors or {},
            labels=LABELS,
            saved=saved,
            panel=status_panel(tenant),
            webhook_url=webhook_url(settings.public_base_url, tenant),
            path_mode=tenant.rokt_webhook_path_mode,
            new_webhook_secret=new_webhook_secret,
            grace_hours=settings.webhook_secret_grace_hours,
            csrf_token=csrf_token(session),
            contact_key_field=CONTACT_KEY_FIELD,
        )
    )
    response.status_code = status
    return response


def webhook_url(base: str, tenant: Tenant) -> str:
    """Where Rokt sends webhooks: with the path token when path mode is on and a token exists
    (Rokt signs nothing), else the header-only URL (webhooks signed with X-Rokt-Signature)."""
    url = f"{base}/t/{tenant.name}/webhooks/rokt"
    if tenant.rokt_webhook_path_mode and tenant.rokt_webhook_path_token:
        return f"{url}/{tenant.rokt_webhook_path_token}"
    return url


@app_settings.get("/settings")
@require_app_session
def show():
    return _page(g.app_tenant)


def _changes(tenant: Tenant, loaded: dict[str, Any]) -> dict[str, Any]:
    """The form's values as registry changes; the SFMC auth mode follows from the client id:
    with one (a server-to-server package) client credentials, without it the sign-in's refresh token."""
    changes = dict(loaded)
    if changes.get("sfmc_client_id"):
        if not changes.get("sfmc_client_secret") and not tenant.sfmc_client_secret:
            raise ValidationError({"sfmc_client_secret": ["required with an SFMC client id"]})
        changes["sfmc_auth_mode"] = SfmcAuthMode.CLIENT_CREDENTIALS.value
    else:
        changes["sfmc_auth_mode"] = SfmcAuthMode.REFRESH_TOKEN.value
    return changes


@app_settings.post("/settings")
@require_app_session
def save():
    tenant: Tenant = g.app_tenant
    if tenant.pinned:
        return error_page(403, "Read-only", "This tenant is configured by the operator; change it there.")
    form = {k: v for k, v in request.form.items() if k != CSRF_FIELD}
    try:
        changes = _changes(tenant, SCHEMA.load(form))
        updated = _runtime().registry.update(tenant.name, changes)
    except ValidationError as exc:
        messages = exc.messages if isinstance(exc.messages, dict) else {"_schema": exc.messages}
        safe_form = {k: v for k, v in form.items() if k not in SECRET_FIELDS}
        return _page(tenant, status=400, form=safe_form, errors=_on_form_fields(messages))
    except TenantPinned:
        return error_page(403, "Read-only", "This tenant is configured by the operator; change it there.")
    changed = [
        vendor
        for vendor, fields in CREDENTIAL_FIELDS.items()
        if any(getattr(tenant, f) != getattr(updated, f) for f in fields)
    ]
    _forget_checks(tenant.name, changed)
    log.info("app settings saved: tenant %s, fields %s", tenant.name, sorted(changes))
    return _page(updated, saved=True)


def _on_form_fields(messages: dict[str, Any]) -> dict[str, Any]:
    """Errors about settings the form has no input for, shown at the input that caused them (an
    emptied server-to-server client id leaves SFMC calls with the sign-in's refresh token), so
    every error is tied to a field the admin can change and focus lands there."""
    tied: dict[str, Any] = {}
    for name, found in messages.items():
        owner = CAUSED_BY.get(name, name)
        said = found if isinstance(found, list) else [str(found)]
        if owner != name:
            said = [f"{label(name)}: {m}" for m in said]
        tied.setdefault(owner, []).extend(said)
    return tied


@app_settings.post("/settings/check")
@require_app_session
def check_session():
    """Asked by app.js before a form is sent: the CSRF check (before_request) answers a stale or
    ended session here, as JSON, so the page keeps the form and says what happened (`?action=save`:
    in the words of a Save)."""
    return jsonify(ok=True)


def _check(vendor: str, what: str, call: Any, missing: list[str]) -> dict[str, Any]:
    """One vendor's token fetch: ok, or why not (the error's `reason`: never a secret). Settings
    that are not set are named, not sent to the vendor to be refused with a bare HTTP 401."""
    now = time.time()
    unset = [f for f in missing if f in VENDOR_REQUIRED[vendor]]
    if unset:
        return {"ok": False, "reason": "not set: " + ", ".join(label(f) for f in unset), "checkedAt": now}
    try:
        call()
    except ClientError as exc:
        return {"ok": False, "reason": exc.reason, "checkedAt": now}
    except (UnknownTenant, ValueError) as exc:
        return {"ok": False, "reason": f"{what} is not configured ({type(exc).__name__})", "checkedAt": now}
    except Exception as exc:  # anything else: logged, answered without its text
        log.exception("test connection: %s check failed unexpectedly", what)
        return {"ok": False, "reason": f"unexpected error ({type(exc).__name__})", "checkedAt": now}
    return {"ok": True, "reason": "", "checkedAt": now}


@app_settings.post("/settings/test")
@require_app_session
def test_connection():
    """Both vendors' token fetch, stored as the Tokens row; the answer carries what the page
    refreshes with it (Tokens row, badge, "Still missing")."""
    rt, name = _runtime(), g.app_tenant.name
    missing = rt.registry.missing(name)
    result: dict[str, Any] = {
        "checkedAt": time.time(),
        "rokt": _check("rokt", "Rokt", lambda: rt.rokt(name).check_credentials(), missing),
        "sfmc": _check("sfmc", "SFMC", lambda: rt.sfmc(name).check_credentials(), missing),
    }
    result["ok"] = result["rokt"]["ok"] and result["sfmc"]["ok"]
    rt.redis.set(keys.settings_check(name), json.dumps(result))
    log.info("test connection: tenant %s rokt=%s sfmc=%s", name, result["rokt"]["ok"], result["sfmc"]["ok"])
    tenant = rt.registry.get(name) or g.app_tenant
    return jsonify(
        {
            **result,
            "tokens": token_rows(result),
            "status": str(tenant.status),
            "missing": missing_labels(name),
        }
    )


@app_settings.post("/settings/webhook/rotate")
@require_app_session
def rotate_webhook():
    tenant: Tenant = g.app_tenant
    try:
        secret = _runtime().registry.rotate_webhook_secret(tenant.name)
    except TenantPinned:
        return error_page(403, "Read-only", "This tenant is configured by the operator; change it there.")
    log.info("webhook secret rotated: tenant %s", tenant.name)
    return _page(_runtime().registry.get(tenant.name) or tenant, new_webhook_secret=secret)


@app_settings.post("/settings/webhook/mode")
@require_app_session
def webhook_mode():
    """Path mode on (the URL's token authenticates) or off (header-only: signed webhooks)."""
    tenant: Tenant = g.app_tenant
    wanted = request.form.get("path_mode") == "on"
    try:
        updated = _runtime().registry.update(tenant.name, {"rokt_webhook_path_mode": wanted})
    except TenantPinned:
        return error_page(403, "Read-only", "This tenant is configured by the operator; change it there.")
    log.info("webhook path mode %s: tenant %s", "on" if wanted else "off", tenant.name)
    return _page(updated)


@app_settings.post("/install")
@require_app_session
def install():
    rt, name = _runtime(), g.app_tenant.name
    if not dataextensions.mark_queued(rt.redis, name):
        answer = jsonify(
            error="install_running",
            message="an install is already queued or running",
            progress=dataextensions.install_progress(rt.redis, name),
        )
        answer.status_code = 409
        return answer
    try:
        current_app.extensions["rsf.install_data_extensions"](name)
    except Exception:
        log.exception("install data extensions: could not enqueue for tenant %s", name)
        dataextensions.record_failure(rt.redis, name, "could not be queued; try again")  # not stuck "queued"
        return error_page(503, "Try again", "The install could not be queued; try again in a moment.")
    answer = jsonify(dataextensions.install_progress(rt.redis, name))
    answer.status_code = 202
    return answer


@app_settings.get("/install/status")
@require_app_session
def install_status():
    return jsonify(dataextensions.install_progress(_runtime().redis, g.app_tenant.name))
