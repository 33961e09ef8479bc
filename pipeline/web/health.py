"""Liveness for load balancers and operators: 200 when Redis answers, 503 otherwise."""

from __future__ import annotations

import redis
from flask import Blueprint, current_app, jsonify

health = Blueprint("health", __name__)


@health.get("/healthz")
def healthz():
    try:
        current_app.extensions["rsf.runtime"].redis.ping()
    except redis.RedisError as exc:
        response = jsonify(status="unavailable", redis=type(exc).__name__)
        response.status_code = 503
        response.headers["Retry-After"] = "5"
        return response
    return jsonify(status="ok", redis="ok")
