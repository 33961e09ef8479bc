"""The intake benchmark's baseline: a Flask endpoint on the same path that only answers a
small JSON body, served by the identical gunicorn configuration."""

from flask import Flask, jsonify, redirect

app = Flask("bare")


@app.post("/t/<tenant>/activity/execute")
def execute(tenant: str):
    return jsonify(roktStatus="queued", roktEventId="", executionId="")


@app.get("/healthz")
def healthz():
    """What the process starter polls before the load begins (the service has its own)."""
    return jsonify(ok=True)


@app.get("/t/<tenant>/c/<token>")
def tracked_link(tenant: str, token: str):
    """The redirect benchmark's baseline: a 302 to a fixed target, nothing looked up or counted."""
    return redirect("https://brand.example/sale?utm_source=RoktCalendar", 302)
