"""The app factory (pipeline/web/__init__.py `create_app`): a body over MAX_BODY_BYTES is 413,
chunked ones included (never cut and passed on), and a body of exactly the cap is read."""

import io
import json

from werkzeug.test import EnvironBuilder, run_wsgi_app

from pipeline.web import MAX_BODY_BYTES
from pipeline.web.webhook_auth import signature_header
from tests.unit.samples import SUBSCRIBE
from tests.unit.web.signed import WEBHOOK_SECRET


def _chunked(client_app, path, body, headers):
    builder = EnvironBuilder(method="POST", path=path, input_stream=io.BytesIO(body), headers=headers)
    environ = builder.get_environ()
    environ.pop("CONTENT_LENGTH", None)  # chunked: no Content-Length
    environ["HTTP_TRANSFER_ENCODING"] = "chunked"
    environ["wsgi.input_terminated"] = True  # as gunicorn and werkzeug's server set it
    app_iter, status, _headers = run_wsgi_app(client_app.application, environ)
    return int(status.split()[0]), b"".join(app_iter)


def test_a_chunked_body_over_the_cap_is_413_not_cut(parts):
    _, client, _, hooks = parts
    big = json.dumps({**SUBSCRIBE, "pad": "x" * MAX_BODY_BYTES}).encode()
    headers = {"Content-Type": "application/json", "X-Rokt-Signature": signature_header(WEBHOOK_SECRET, big)}
    status, body = _chunked(client, "/t/default/webhooks/rokt", big, headers)
    assert status == 413 and json.loads(body)["error"] == "request_entity_too_large"
    small = json.dumps(SUBSCRIBE).encode()
    headers["X-Rokt-Signature"] = signature_header(WEBHOOK_SECRET, small)
    assert _chunked(client, "/t/default/webhooks/rokt", small, headers)[0] == 200
    assert len(hooks.calls) == 1


def test_a_body_of_exactly_the_cap_is_read_and_one_byte_more_is_413(parts):
    _, client, _, _ = parts
    at_cap = b"x" * MAX_BODY_BYTES
    assert client.post("/t/default/activity/execute", data=at_cap).status_code == 401
    assert client.post("/t/default/activity/execute", data=at_cap + b"x").status_code == 413
    status, _ = _chunked(client, "/t/default/activity/execute", at_cap, {})
    assert status == 401
    status, _ = _chunked(client, "/t/default/activity/execute", at_cap + b"x", {})
    assert status == 413
