"""Liveness for load balancers and operators: 200 when Redis answers, 503 otherwise."""

from __future__ import annotations

import redis
from flask import Blueprint, current_app, jsonify

from pipeline.web.errors import json_response

health = Blueprint("health", __name__)


@health.get("/healthz")
def healthz():
    try:
        current_app.extensions["rsf.runtime"].redis.ping()
    except redis.RedisError as exc:  # a status document, not an error body: same 503 + Retry-After
        return json_response(503, status="unavailable", redis=type(exc).__name__)
    return jsonify(status="ok", redis="ok")
