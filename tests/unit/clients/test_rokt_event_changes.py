"""The Rokt client's calls on events already sent (update everywhere, delete everywhere, remove
from one subscription) over `responses`: what each sends and how each answer maps to a typed
error, as for create."""

import json

import pytest
import requests
import responses

from pipeline.clients.errors import (
    EventNotFound,
    PermanentError,
    RetryableError,
    Throttled,
    Unauthorized,
    UnknownOutcome,
)
from pipeline.clients.rokt import RoktClient
from tests.unit.clients.test_clients import ROKT_ERROR_ANSWERS

TOKEN = "https://rokt.test/oauth2/token"
UPDATE = "https://rokt.test/v1/subscriptionevent/acct/update"
DELETE = "https://rokt.test/v1/subscriptionevent/acct/rsf-e1"
REMOVE = "https://rokt.test/v2/subscription/acct/sub-1/subscriptionevent/rsf-e1"
EVENT = {
    "eventId": "rsf-e1",
    "title": "Sale moves to Saturday",
    "start": "2026-01-03T09:00:00",
    "timezone": "UTC",
}

CALLS = {
    "update": (responses.POST, UPDATE, lambda client: client.update_subscription_event(EVENT)),
    "delete": (responses.DELETE, DELETE, lambda client: client.delete_subscription_event("rsf-e1")),
    "remove": (responses.DELETE, REMOVE, lambda client: client.remove_subscription_event("sub-1", "rsf-e1")),
}


def rokt(settings, fake_redis):
    return RoktClient(settings.tenant("default"), fake_redis, (1, 1))


def token(n=1):
    return {"access_token": f"tok-{n}", "token_type": "bearer", "expires_in": 300}


@responses.activate
def test_update_sends_the_event_flat_with_the_bearer_token(settings, fake_redis):
    responses.post(TOKEN, json=token())
    update = responses.post(UPDATE, status=202)
    assert rokt(settings, fake_redis).update_subscription_event(EVENT) is None
    assert update.call_count == 1
    request = update.calls[0].request
    assert request.headers["Authorization"] == "Bearer tok-1"
    assert json.loads(request.body) == EVENT  # Rokt's flat shape (A3), not {"event": ...}


@responses.activate
def test_delete_and_remove_send_no_body_to_their_paths(settings, fake_redis):
    responses.post(TOKEN, json=token())
    delete = responses.delete(DELETE, status=202)
    remove = responses.delete(REMOVE, status=202)
    client = rokt(settings, fake_redis)
    client.delete_subscription_event("rsf-e1")
    client.remove_subscription_event("sub-1", "rsf-e1")
    assert delete.call_count == remove.call_count == 1
    assert not delete.calls[0].request.body and not remove.calls[0].request.body
    assert remove.calls[0].request.headers["Authorization"] == "Bearer tok-1"


@responses.activate
def test_an_event_id_is_one_path_segment_whatever_it_holds(settings, fake_redis):
    responses.post(TOKEN, json=token())
    odd = responses.delete("https://rokt.test/v1/subscriptionevent/acct/a%2Fb%3Fc%20d", status=202)
    rokt(settings, fake_redis).delete_subscription_event("a/b?c d")
    assert odd.call_count == 1


@pytest.mark.parametrize("call", sorted(CALLS))
@pytest.mark.parametrize("status", [400, 404])
@responses.activate
def test_an_unknown_event_id_is_a_permanent_error_naming_it(settings, fake_redis, call, status):
    method, url, invoke = CALLS[call]
    responses.post(TOKEN, json=token())
    responses.add(method, url, status=status, json={"Code": "EventNotFound", "Reason": "no event rsf-e1"})
    with pytest.raises(EventNotFound) as caught:
        invoke(rokt(settings, fake_redis))
    assert isinstance(caught.value, PermanentError) and not caught.value.retryable
    assert caught.value.event_id == "rsf-e1" and "'rsf-e1'" in caught.value.reason
    assert caught.value.status == status


@pytest.mark.parametrize("call", sorted(CALLS))
@responses.activate
def test_a_bare_404_is_permanent_but_not_taken_for_an_unknown_event(settings, fake_redis, call):
    """The delete path is inferred: a wrong path must not look like "already gone"."""
    method, url, invoke = CALLS[call]
    responses.post(TOKEN, json=token())
    responses.add(method, url, status=404, body="Not Found")
    with pytest.raises(PermanentError) as caught:
        invoke(rokt(settings, fake_redis))
    assert not isinstance(caught.value, EventNotFound)
    assert "'rsf-e1'" in caught.value.reason and "Not Found" in caught.value.reason


@pytest.mark.parametrize("call", sorted(CALLS))
@pytest.mark.parametrize(("status", "headers", "body", "error"), ROKT_ERROR_ANSWERS)
@responses.activate
def test_errors_are_typed_as_for_create(settings, fake_redis, call, status, headers, body, error):
    method, url, invoke = CALLS[call]
    responses.post(TOKEN, json=token())
    responses.add(method, url, status=status, headers=headers, json=body)
    with pytest.raises(error) as caught:
        invoke(rokt(settings, fake_redis))
    assert type(caught.value) is error  # a ValidationFailed 400 is not an EventNotFound
    assert caught.value.retryable is (error is not PermanentError)
    if error is Throttled:
        assert caught.value.retry_after == 7
    if body.get("Reason"):
        assert body["Reason"] in caught.value.reason


@pytest.mark.parametrize("call", sorted(CALLS))
@responses.activate
def test_refreshes_once_on_401_then_gives_up(settings, fake_redis, call):
    method, url, invoke = CALLS[call]
    responses.post(TOKEN, json=token(1))
    responses.post(TOKEN, json=token(2))
    responses.add(method, url, status=401)
    responses.add(method, url, status=202)
    invoke(rokt(settings, fake_redis))
    sent = [c.request.headers["Authorization"] for c in responses.calls if c.request.url == url]
    assert sent == ["Bearer tok-1", "Bearer tok-2"]
    responses.replace(method, url, status=401)
    with pytest.raises(Unauthorized):
        invoke(rokt(settings, fake_redis))


@pytest.mark.parametrize("call", sorted(CALLS))
@responses.activate
def test_network_failures_are_retryable_and_read_timeouts_unknown(settings, fake_redis, call):
    method, url, invoke = CALLS[call]
    responses.post(TOKEN, json=token())
    responses.add(method, url, body=requests.ConnectionError("refused"))
    with pytest.raises(RetryableError):
        invoke(rokt(settings, fake_redis))
    responses.replace(method, url, body=requests.ReadTimeout("slow"))
    with pytest.raises(UnknownOutcome):
        invoke(rokt(settings, fake_redis))


@responses.activate
def test_each_change_passes_the_rate_gate(settings, fake_redis):
    """The tenant's limiter runs before every call, as for create (the jobs share it)."""
    responses.post(TOKEN, json=token())
    for method, url, _invoke in CALLS.values():
        responses.add(method, url, status=202)
    passes = []
    client = RoktClient(settings.tenant("default"), fake_redis, (1, 1), gate=lambda: passes.append(1))
    for _method, _url, invoke in CALLS.values():
        invoke(client)
    assert len(passes) == 3
