"""The activity UI's API (`/t/<tenant>/api/...`): templates, preview and an activity's live counts.

Every route requires a session or API key of the URL's tenant (`pipeline.web.auth`); bodies and
queries are validated by the schemas in `schemas/api.py` and `schemas/templates.py`, and a bad
one gets 400 naming the field. The templates routes call the same domain functions as the CLI
(`pipeline.journeys.templates`).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, request
from marshmallow import Schema, ValidationError
from tzlocal.windows_tz import tz_win

from pipeline.infra import dispatch
from pipeline.journeys import event_jobs, templates
from pipeline.journeys.links import link_prefix
from pipeline.journeys.preview import preview
from pipeline.journeys.render import missing_fields_of, time_zone_choices
from pipeline.tenancy.handles import Runtime
from pipeline.vocabulary import JobKind
from pipeline.web.auth import json_body, require_api_auth
from pipeline.web.errors import ApiError
from pipeline.web.performance import performance_answer
from schemas.api import (
    CancelEventsSchema,
    EventJobsQuerySchema,
    PerformanceQuerySchema,
    PreviewSchema,
    RemoveEventsSchema,
    TemplateQuerySchema,
    TemplateUpdateQuerySchema,
)

api = Blueprint("api", __name__, url_prefix="/t/<tenant>/api")

QUERY_SCHEMA = TemplateQuerySchema()
PREVIEW_SCHEMA = PreviewSchema()
UPDATE_QUERY_SCHEMA = TemplateUpdateQuerySchema()
CANCEL_SCHEMA = CancelEventsSchema()
REMOVE_SCHEMA = RemoveEventsSchema()
JOBS_QUERY_SCHEMA = EventJobsQuerySchema()
PERFORMANCE_QUERY_SCHEMA = PerformanceQuerySchema()


def _runtime() -> Runtime:
    return current_app.extensions["rsf.runtime"]


def _known_tenant(name: str) -> None:
    if _runtime().registry.get(name) is None:
        raise ApiError(404, "not_found", f"unknown tenant {name!r}")


def _body() -> dict[str, Any]:
    body = json_body()
    if body is None:
        raise ApiError(400, "invalid_json", "body must be JSON (Content-Type: application/json)")
    if not isinstance(body, dict):
        raise ApiError(
            400, "invalid_payload", "body must be a JSON object", fields={"_schema": ["not an object"]}
        )
    return body


def _load(schema: Schema, data: Any, what: str) -> dict[str, Any]:
    try:
        return schema.load(data)
    except ValidationError as exc:
        raise ApiError(400, "invalid_payload", f"{what} rejected", fields=exc.messages) from exc


def _item(template: dict[str, Any]) -> dict[str, Any]:
    return {**template, "placeholders": templates.placeholders(template)}


def _get(tenant: str, template_id: str) -> dict[str, Any]:
    try:
        return templates.get_template(_runtime().redis, tenant, template_id)
    except templates.TemplateNotFound as exc:
        raise ApiError(404, "not_found", f"template {template_id!r} not found") from exc


@api.get("/templates")
@require_api_auth
def list_templates(tenant: str):
    _known_tenant(tenant)
    query = _load(QUERY_SCHEMA, request.args.to_dict(), "query")
    items, total = templates.search_templates(
        _runtime().redis, tenant, query["q"], query["page"], query["perPage"]
    )
    return jsonify(
        {
            "items": [_item(t) for t in items],
            "total": total,
            "page": query["page"],
            "perPage": query["perPage"],
        }
    )


@api.post("/templates")
@require_api_auth
def create_template(tenant: str):
    _known_tenant(tenant)
    body = _body()
    try:
        stored = templates.create_template(_runtime().redis, tenant, body)
    except ValidationError as exc:
        raise ApiError(400, "invalid_template", "template rejected", fields=exc.messages) from exc
    return jsonify(_item(stored)), 201


@api.get("/templates/<template_id>")
@require_api_auth
def get_template(tenant: str, template_id: str):
    _known_tenant(tenant)
    return jsonify(_item(_get(tenant, template_id)))


@api.put("/templates/<template_id>")
@require_api_auth
def update_template(tenant: str, template_id: str):
    """Replace the template; with `applyToSent` (query or body) true, the events already sent
    of it are corrected too: the answer carries the correction job."""
    _known_tenant(tenant)
    body = _body()
    flags = {
        **request.args.to_dict(),
        **({"applyToSent": body.pop("applyToSent")} if "applyToSent" in body else {}),
    }
    apply_to_sent = _load(UPDATE_QUERY_SCHEMA, flags, "applyToSent")["applyToSent"]
    rt = _runtime()
    try:  # the template may not change under a running correction or cancel of it
        event_jobs.ensure_no_job_on(rt.redis, tenant, template_id)
    except event_jobs.TemplateJobRunning as exc:
        raise ApiError(409, "job_running", str(exc), jobId=exc.job_id) from exc
    try:
        stored = templates.update_template(rt.redis, tenant, template_id, body)
    except templates.TemplateNotFound as exc:
        raise ApiError(404, "not_found", f"template {template_id!r} not found") from exc
    except ValidationError as exc:
        raise ApiError(400, "invalid_template", "template rejected", fields=exc.messages) from exc
    answer = _item(stored)
    if apply_to_sent:
        job = event_jobs.start_job(
            rt, tenant, JobKind.CORRECT, started_by=_who(), template_id=template_id, reason="template edited"
        )
        dispatch.enqueue_event_job_step(tenant, job.job_id, event_jobs.PLAN)
        answer["job"] = job.as_dict()
    return jsonify(answer)


def _who() -> str:
    identity = g.get("api_identity")
    return identity.describe() if identity is not None else "unknown"


@api.get("/templates/<template_id>/sent")
@require_api_auth
def sent_events(tenant: str, template_id: str):
    """How many events of the template Rokt holds (what a correction or a cancel works on)."""
    _known_tenant(tenant)
    template = _get(tenant, template_id)
    counts = event_jobs.sent_count(_runtime(), tenant, template_id)
    return jsonify({"templateId": template_id, "archived": bool(template.get("archivedAt")), **counts})


@api.post("/templates/<template_id>/cancel")
@require_api_auth
def cancel_events(tenant: str, template_id: str):
    """Delete every event of the template Rokt holds and archive it (202 with the job). With
    `confirmCount`, a count that no longer matches answers 409 with the count now."""
    _known_tenant(tenant)
    body = _load(CANCEL_SCHEMA, _body() if request.get_data() else {}, "cancel request")  # a body is optional
    _get(tenant, template_id)
    rt = _runtime()
    if "confirmCount" in body:
        held = event_jobs.sent_count(rt, tenant, template_id)["held"]
        if held != body["confirmCount"]:
            raise ApiError(
                409, "count_changed", f"{held} events are held now, not {body['confirmCount']}", held=held
            )
    try:
        job = event_jobs.start_job(
            rt, tenant, JobKind.CANCEL, started_by=_who(), template_id=template_id, reason=body["reason"]
        )
    except event_jobs.TemplateJobRunning as exc:
        raise ApiError(409, "job_running", str(exc), jobId=exc.job_id) from exc
    dispatch.enqueue_event_job_step(tenant, job.job_id, event_jobs.PLAN)
    return jsonify(job.as_dict()), 202


@api.post("/templates/<template_id>/restore")
@require_api_auth
def restore_template(tenant: str, template_id: str):
    """An archived template serves the contacts who reach its step from now on (the events
    cancelled stay cancelled); 409 while the cancel that archived it still runs."""
    _known_tenant(tenant)
    try:
        stored = event_jobs.restore(_runtime().redis, tenant, template_id)
    except templates.TemplateNotFound as exc:
        raise ApiError(404, "not_found", f"template {template_id!r} not found") from exc
    except event_jobs.CancelRunning as exc:
        raise ApiError(409, "cancel_running", str(exc), jobId=exc.job_id) from exc
    return jsonify(_item(stored))


@api.post("/events/remove")
@require_api_auth
def remove_events(tenant: str):
    """One contact's events out of their subscriptions (all, or one template's): 202 with the job."""
    _known_tenant(tenant)
    body = _load(REMOVE_SCHEMA, _body(), "remove request")
    rt = _runtime()
    try:
        job = event_jobs.start_job(
            rt,
            tenant,
            JobKind.WITHDRAW,
            started_by=_who(),
            contact_key=body["contactKey"],
            template_id=body.get("templateId"),
            reason=body["reason"],
        )
    except templates.TemplateNotFound as exc:
        raise ApiError(404, "not_found", f"template {body['templateId']!r} not found") from exc
    dispatch.enqueue_event_job_step(tenant, job.job_id, event_jobs.PLAN)
    return jsonify(job.as_dict()), 202


@api.get("/event-jobs")
@require_api_auth
def list_event_jobs(tenant: str):
    _known_tenant(tenant)
    query = _load(JOBS_QUERY_SCHEMA, request.args.to_dict(), "query")
    jobs = event_jobs.list_jobs(_runtime().redis, tenant, limit=query["limit"], running_only=query["running"])
    return jsonify({"items": [job.as_dict() for job in jobs]})


@api.get("/event-jobs/<job_id>")
@require_api_auth
def get_event_job(tenant: str, job_id: str):
    """One job with its progress, and why it kept or failed executions (at most 100)."""
    _known_tenant(tenant)
    rt = _runtime()
    job = event_jobs.get_job(rt.redis, tenant, job_id) if len(job_id) <= 40 else None
    if job is None:
        raise ApiError(404, "not_found", f"event job {job_id!r} not found")
    return jsonify({**job.as_dict(), "notes": event_jobs.notes(rt.redis, tenant, job_id)})


@api.delete("/templates/<template_id>")
@require_api_auth
def delete_template(tenant: str, template_id: str):
    _known_tenant(tenant)
    rt = _runtime()
    try:
        templates.delete_template(rt.redis, tenant, template_id, rt.ledger)
    except templates.TemplateNotFound as exc:
        raise ApiError(404, "not_found", f"template {template_id!r} not found") from exc
    except templates.TemplateInUse as exc:
        raise ApiError(409, "in_use", str(exc), openExecutions=exc.open_executions) from exc
    return Response(status=204)


@api.post("/preview")
@require_api_auth
def preview_template(tenant: str):
    _known_tenant(tenant)
    body = _load(PREVIEW_SCHEMA, _body(), "preview request")
    template = _get(tenant, body["templateId"]) if "templateId" in body else body["template"]
    prefix = link_prefix(_runtime().settings.public_base_url, tenant)
    return jsonify(preview(template, body["values"], brand=body["brand"], link_prefix=prefix))


@api.get("/activities/<activity_id>/stats")
@require_api_auth
def activity_stats(tenant: str, activity_id: str):
    _known_tenant(tenant)
    if len(activity_id) > 200:
        raise ApiError(400, "invalid_payload", "activityId rejected", fields={"activityId": ["Too long."]})
    days, kept = request.args.get("days", "0"), _runtime().settings.performance_days
    if not days.isdigit() or int(days) > kept:
        raise ApiError(400, "invalid_payload", "days rejected", fields={"days": [f"Must be 0 to {kept}."]})
    stats = _runtime().ledger.activity_stats(tenant, activity_id, int(days))
    # each missing_field reason with the placeholders it names, so the view can say which
    stats["missingFields"] = [
        {**item, "fields": missing_fields_of(item["reason"])} for item in stats.get("missingFields", [])
    ]
    return jsonify({"activityId": activity_id, **stats})


@api.get("/performance")
@require_api_auth
def performance_report(tenant: str):
    """The tenant's (or one activity's or template's) figures by day: JSON, or CSV with
    `format=csv` (pipeline/stores/performance.py)."""
    _known_tenant(tenant)
    query = _load(PERFORMANCE_QUERY_SCHEMA, request.args.to_dict(), "query")
    return performance_answer(_runtime(), tenant, query)


@api.get("/timezones")
@require_api_auth
def time_zones(tenant: str):
    """The time zones the UI offers (each one renders): IANA name and the Windows ID Rokt gets;
    the template schema also accepts a city name or any case of these."""
    _known_tenant(tenant)
    return jsonify(
        {"items": [{"id": name, "windows": tz_win.get(name, name)} for name in time_zone_choices()]}
    )
