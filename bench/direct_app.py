"""The intake benchmark's baseline for the previous design: execute as it is, then the render
task published by the web process itself on the request path (`dispatch.enqueue_execution`, as
execute did before the intake stream), served by the identical gunicorn configuration. The
claim still appends its stream entry (one more command inside the same Lua call); nothing pumps
it here."""

from flask import Response

from pipeline.infra import dispatch
from pipeline.web import create_app

app = create_app()
_execute = app.view_functions["activity.execute"]


def execute_and_send(tenant: str) -> Response:
    response = _execute(tenant)
    # every execution of the benchmark is new: the old design sent each one's render task
    dispatch.enqueue_execution(tenant, response.get_json()["executionId"])
    return response


app.view_functions["activity.execute"] = execute_and_send
