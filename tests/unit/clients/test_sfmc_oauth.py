"""The App Settings sign-in client (pipeline/clients/sfmc_oauth.py) over `responses`: the code
exchange and `/v2/userinfo` at the account's own authorization host, what each answer becomes,
and the error each failure maps to."""

import json

import pytest
import requests
import responses

from pipeline.clients.errors import PermanentError, RetryableError, Throttled, UnknownOutcome
from pipeline.clients.sfmc_oauth import DEFAULT_RETRY_AFTER, SfmcOAuthClient, SignedInUser, SignInToken

AUTH = "https://mc-abc.auth.marketingcloudapis.com"
TOKEN_URL = f"{AUTH}/v2/token"
USERINFO_URL = f"{AUTH}/v2/userinfo"
REDIRECT = "https://app.example/app/oauth/callback"
TIMEOUT = (3.0, 7.0)
ANSWER = {
    "access_token": "at-signed-in",
    "refresh_token": "rt-offline",
    "expires_in": 1079,
    "token_type": "Bearer",
    "scope": "offline data_extensions_read",
    "rest_instance_url": "https://mc-abc.rest.marketingcloudapis.com/",
    "soap_instance_url": "https://mc-abc.soap.marketingcloudapis.com/",
}
MISSING = r"organization\.enterprise_id or member_id missing"
USERINFO = {
    "user": {"sub": "7", "name": "Ava Admin", "email": "ava@brand.example"},
    "organization": {"enterprise_id": 100012345, "member_id": 100067890},
}


@pytest.fixture
def client():
    return SfmcOAuthClient("app-client-id", "app-client-secret", TIMEOUT)


# -- the code exchange ------------------------------------------------------------------------


@responses.activate
def test_the_code_exchange_posts_the_authorization_code_grant_to_the_accounts_host(client):
    answered = responses.post(TOKEN_URL, json=ANSWER)
    token = client.exchange_code(AUTH, "code-1", REDIRECT)
    assert answered.call_count == 1
    request = responses.calls[0].request
    assert json.loads(request.body) == {
        "grant_type": "authorization_code",
        "code": "code-1",
        "client_id": "app-client-id",
        "client_secret": "app-client-secret",
        "redirect_uri": REDIRECT,
    }
    assert request.req_kwargs["timeout"] == TIMEOUT
    assert token == SignInToken(
        access_token="at-signed-in",
        refresh_token="rt-offline",
        expires_in=1079,
        scope="offline data_extensions_read",
        rest_instance_url="https://mc-abc.rest.marketingcloudapis.com/",
        soap_instance_url="https://mc-abc.soap.marketingcloudapis.com/",
    )


@responses.activate
def test_the_tokens_never_print(client):
    responses.post(TOKEN_URL, json=ANSWER)
    token = client.exchange_code(AUTH, "code-1", REDIRECT)
    assert "at-signed-in" not in repr(token) and "rt-offline" not in repr(token)
    assert "offline data_extensions_read" in repr(token)  # what is not secret still does


@pytest.mark.parametrize("refresh", [None, "", 42, ["rt"]])
@responses.activate
def test_without_a_usable_refresh_token_the_token_has_none(client, refresh):
    """No `offline` scope: SFMC sends no refresh token; an empty or non-text one is none either."""
    body = {k: v for k, v in ANSWER.items() if k != "refresh_token"}
    if refresh is not None:
        body["refresh_token"] = refresh
    responses.post(TOKEN_URL, json=body)
    token = client.exchange_code(AUTH, "code-1", REDIRECT)
    assert token.refresh_token is None and token.access_token == "at-signed-in"


@responses.activate
def test_an_answer_with_only_an_access_token_takes_empty_defaults(client):
    responses.post(TOKEN_URL, json={"access_token": "at-only", "expires_in": None})
    assert client.exchange_code(AUTH, "code-1", REDIRECT) == SignInToken(access_token="at-only")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({**ANSWER, "access_token": ""}, "the answer has no access_token"),
        ({k: v for k, v in ANSWER.items() if k != "access_token"}, "the answer has no access_token"),
        ({**ANSWER, "access_token": 12345}, "the answer has no access_token"),
        (["not", "an", "object"], "the answer is not a JSON object"),
    ],
)
@responses.activate
def test_a_token_answer_without_an_access_token_is_permanent(client, body, message):
    responses.post(TOKEN_URL, json=body)
    with pytest.raises(PermanentError, match=f"^SFMC token: {message}$"):
        client.exchange_code(AUTH, "code-1", REDIRECT)


@responses.activate
def test_a_token_answer_that_is_not_json_is_permanent_with_its_status(client):
    responses.post(TOKEN_URL, body="<html>gateway</html>", status=200)
    with pytest.raises(PermanentError, match="SFMC token: the answer is not JSON") as refused:
        client.exchange_code(AUTH, "code-1", REDIRECT)
    assert refused.value.status == 200


# -- userinfo ------------------------------------------------------------------------------------


@responses.activate
def test_userinfo_asks_with_the_bearer_token_and_names_enterprise_and_business_unit(client):
    responses.get(USERINFO_URL, json=USERINFO)
    user = client.userinfo(AUTH, "at-signed-in")
    request = responses.calls[0].request
    assert request.method == "GET" and request.url == USERINFO_URL
    assert request.headers["Authorization"] == "Bearer at-signed-in"
    assert request.headers["Accept"] == "application/json"
    assert request.req_kwargs["timeout"] == TIMEOUT
    assert user == SignedInUser(eid="100012345", mid="100067890", name="Ava Admin", email="ava@brand.example")


@responses.activate
def test_userinfo_takes_identifiers_as_text_and_a_missing_user_as_empty(client):
    responses.get(USERINFO_URL, json={"organization": {"enterprise_id": " 42 ", "member_id": "MID43"}})
    assert client.userinfo(AUTH, "at") == SignedInUser(eid="42", mid="MID43", name="", email="")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"user": USERINFO["user"]}, "the answer has no organization"),
        ({"organization": "100012345"}, "the answer has no organization"),
        ({"organization": {"member_id": 100067890}}, MISSING),
        ({"organization": {"enterprise_id": 100012345}}, MISSING),
        ({"organization": {"enterprise_id": True, "member_id": 1}}, MISSING),
        ({"organization": {"enterprise_id": 1.5, "member_id": 1}}, MISSING),
        ({"organization": {"enterprise_id": "1/../2", "member_id": 1}}, MISSING),
        ({"organization": {"enterprise_id": "9" * 33, "member_id": 1}}, MISSING),
        ({"organization": {"enterprise_id": "", "member_id": 1}}, MISSING),
        ([USERINFO], "the answer is not a JSON object"),
    ],
    ids=[
        "no organization",
        "organization not an object",
        "no enterprise",
        "no member",
        "enterprise a boolean",
        "enterprise a float",
        "enterprise not alphanumeric",
        "enterprise of 33 characters",
        "enterprise empty",
        "a list",
    ],
)
@responses.activate
def test_userinfo_without_a_plain_enterprise_and_member_id_is_permanent(client, body, message):
    responses.get(USERINFO_URL, json=body)
    with pytest.raises(PermanentError, match=f"^SFMC userinfo: {message}$"):
        client.userinfo(AUTH, "at")


@responses.activate
def test_the_longest_identifier_taken_is_32_characters(client):
    responses.get(USERINFO_URL, json={"organization": {"enterprise_id": "9" * 32, "member_id": 7}})
    assert client.userinfo(AUTH, "at").eid == "9" * 32


# -- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, PermanentError),  # a used or expired code, a wrong redirect_uri
        (401, PermanentError),  # wrong client credentials: signing in again cannot help
        (403, PermanentError),
        (408, RetryableError),
        (500, RetryableError),
        (503, RetryableError),
    ],
)
@responses.activate
def test_http_failures_of_both_calls_are_typed_with_their_status(client, status, error):
    responses.post(TOKEN_URL, status=status, json={"error": "invalid_grant"})
    responses.get(USERINFO_URL, status=status, json={"message": "no"})
    with pytest.raises(error, match=f"^SFMC token: HTTP {status}: ") as exchanged:
        client.exchange_code(AUTH, "code-1", REDIRECT)
    with pytest.raises(error, match=f"^SFMC userinfo: HTTP {status}: ") as asked:
        client.userinfo(AUTH, "at")
    assert type(exchanged.value) is error and type(asked.value) is error
    assert exchanged.value.status == asked.value.status == status


@responses.activate
def test_a_429_waits_as_long_as_sfmc_says_or_the_default(client):
    responses.post(TOKEN_URL, status=429, headers={"Retry-After": "17"})
    responses.get(USERINFO_URL, status=429)
    with pytest.raises(Throttled) as said:
        client.exchange_code(AUTH, "code-1", REDIRECT)
    with pytest.raises(Throttled) as unsaid:
        client.userinfo(AUTH, "at")
    assert said.value.retry_after == 17
    assert unsaid.value.retry_after == DEFAULT_RETRY_AFTER == 5.0


@responses.activate
def test_an_error_message_quotes_the_answer_with_emails_masked(client):
    responses.post(TOKEN_URL, status=400, json={"error": "invalid_grant", "user": "ava@brand.example"})
    with pytest.raises(PermanentError) as refused:
        client.exchange_code(AUTH, "code-1", REDIRECT)
    assert "invalid_grant" in refused.value.reason
    assert "ava@brand.example" not in refused.value.reason and "@" in refused.value.reason


@pytest.mark.parametrize(
    ("failure", "error"),
    [
        (requests.ConnectionError("refused"), RetryableError),
        (requests.ConnectTimeout("slow"), RetryableError),
        (requests.ReadTimeout("no answer"), UnknownOutcome),
    ],
)
@responses.activate
def test_a_request_without_an_answer_is_retryable_or_of_unknown_outcome(client, failure, error):
    responses.post(TOKEN_URL, body=failure)
    with pytest.raises(error) as failed:
        client.exchange_code(AUTH, "code-1", REDIRECT)
    assert type(failed.value) is error and "/v2/token" in failed.value.reason


def test_a_given_session_is_the_one_used():
    session = requests.Session()
    with responses.RequestsMock() as mocked:
        mocked.get(USERINFO_URL, json=USERINFO)
        sent = []
        session.hooks["response"].append(lambda response, **_: sent.append(response.url))
        SfmcOAuthClient("id", "secret", TIMEOUT, session=session).userinfo(AUTH, "at")
    assert sent == [USERINFO_URL]


@responses.activate
@pytest.mark.parametrize(
    ("organization", "stack"),
    [
        ({"stackKey": "S4"}, "s4"),  # as the legacy app JWT names it
        ({"stack_key": "S11"}, "s11"),  # as one public type of userinfo names it
        ({}, ""),
        ({"stackKey": "S4.evil.example"}, ""),  # never more than one host label
        ({"stackKey": 4}, ""),
    ],
)
def test_userinfo_names_the_accounts_stack_as_a_host_label(client, organization, stack):
    responses.get(USERINFO_URL, json={"organization": {"enterprise_id": 1, "member_id": 2, **organization}})
    assert client.userinfo(AUTH, "at").stack == stack
