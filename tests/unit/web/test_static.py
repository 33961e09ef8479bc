"""The activity's static files: the vendored Postmonger is the recorded one, served from our origin."""

import hashlib
import json

import pytest

from pipeline.web import create_app
from pipeline.web.activity import STATIC_ROOT

RECORD = json.loads((STATIC_ROOT / "js" / "postmonger.json").read_text())


def test_the_vendored_postmonger_is_the_recorded_npm_release():
    script = (STATIC_ROOT / "js" / RECORD["file"]).read_bytes()
    assert (RECORD["package"], RECORD["version"]) == ("postmonger", "0.0.16")
    assert hashlib.sha256(script).hexdigest() == RECORD["sha256"]
    assert RECORD["integrity"].startswith("sha512-")
    licence = (STATIC_ROOT / "js" / "postmonger.LICENSE").read_text()
    assert "MIT" in licence and "BSD" in licence


@pytest.fixture
def client(runtime):
    return create_app(runtime, enqueue_webhook=lambda *_: None).test_client()


def test_postmonger_and_the_icons_are_served_from_the_activity_path(client):
    script = client.get("/t/default/activity/js/postmonger.js")
    assert script.status_code == 200 and "javascript" in script.content_type
    assert hashlib.sha256(script.data).hexdigest() == RECORD["sha256"]
    config = client.get("/t/default/activity/config.json").get_json()
    for name in ("icon", "iconSmall"):
        icon = client.get(f"/t/default/activity/{config['metaData'][name]}")
        assert icon.status_code == 200 and icon.content_type.startswith("image/svg+xml")
        assert b"<svg" in icon.data


@pytest.mark.parametrize(
    "path",
    [
        "/t/default/activity/js/missing.js",
        "/t/default/activity/../../activity.py",
        "/t/default/activity/js/..%2F..%2Factivity.py",
        "/t/nobody/activity/js/postmonger.js",
    ],
)
def test_nothing_else_is_served(client, path):
    answer = client.get(path)
    assert answer.status_code == 404 and answer.is_json


def test_the_vendored_axe_core_is_the_recorded_npm_release():
    """The browser tests' accessibility checker (tests/browser/a11y.py) is the pinned npm file."""
    from tests.browser.a11y import AXE
    from tests.browser.a11y import RECORD as AXE_RECORD

    assert (AXE_RECORD["package"], AXE_RECORD["file"]) == ("axe-core", AXE.name)
    assert hashlib.sha256(AXE.read_bytes()).hexdigest() == AXE_RECORD["sha256"]
    assert AXE_RECORD["integrity"].startswith("sha512-")
    assert "Mozilla Public License" in (AXE.parent / "axe.LICENSE").read_text()
