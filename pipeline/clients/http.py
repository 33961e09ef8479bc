"""What both vendor clients share: a session without hidden retries and error mapping."""

from __future__ import annotations

import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import redis
import requests
from requests.adapters import HTTPAdapter

from pipeline.clients.errors import (
    ClientError,
    PermanentError,
    RetryableError,
    Throttled,
    Unauthorized,
    UnknownOutcome,
    retry_after_seconds,
)
from pipeline.clients.tokens import SharedToken
from pipeline.infra import keys
from pipeline.infra.crypto import SecretBox
from pipeline.infra.logsafe import mask_emails
from pipeline.settings import Tenant

log = logging.getLogger(__name__)

# How the exporter groups vendor answers (`rsf_vendor_calls_total{status_class}`): every
# answer below 400 counts as "2xx"; "error" is a request that got no answer (timeout, refused).
STATUS_CLASSES = ("2xx", "4xx", "429", "5xx", "error")


def status_class(status: int | None) -> str:
    if status is None:
        return "error"
    if status == 429:
        return "429"
    if status >= 500:
        return "5xx"
    if status >= 400:
        return "4xx"
    return "2xx"


class CallCounter:
    """Counts every request a session sends to one vendor for one tenant, by status class, in
    Redis (one HINCRBY per request; shared by every process). Attached to the client's session
    as a response hook, so token, REST and SOAP requests all count; `send()` counts the
    requests that got no answer. A Redis failure never fails the vendor call."""

    def __init__(self, r: redis.Redis, tenant: str, vendor: str) -> None:
        self.r = r
        self.key = keys.calls(tenant)
        self.vendor = vendor

    def attach(self, session: requests.Session) -> None:
        """Count this session's requests here (a session handed to a second client counts once)."""
        hooks = session.hooks["response"]
        hooks[:] = [h for h in hooks if not isinstance(getattr(h, "__self__", None), CallCounter)]
        hooks.append(self.on_response)
        session.call_counter = self  # type: ignore[attr-defined]  # read by send() on errors

    def on_response(self, response: requests.Response, *_args: Any, **_kwargs: Any) -> None:
        self.count(status_class(response.status_code))

    def count(self, klass: str) -> None:
        try:
            self.r.hincrby(self.key, f"{self.vendor}:{klass}", 1)
        except redis.RedisError:
            log.debug("vendor call not counted (Redis unavailable)", exc_info=True)


# Keep-alive connections a client keeps per host: as many as the calls a threads-pool worker
# (worker-rokt, -c 64) may have in flight for one tenant; a call beyond it opens a connection of
# its own, closed after use (pool_block=False: never waits for one).
POOL_MAXSIZE = 64


def new_session(user_agent: str = "rokt-sfmc/0.1") -> requests.Session:
    """One session per client; the adapter never retries (the Celery task owns retries).

    Shared by every thread of the process (the Rokt stage runs on a threads pool): it is fully
    set up here and in the client's constructor (adapters, headers, hooks) and only read after;
    urllib3's connection pool is thread-safe and the cookie jar locks itself."""
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=0, pool_connections=4, pool_maxsize=POOL_MAXSIZE)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = user_agent
    _read_environment_once(session)
    return session


_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
_CA_BUNDLE_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


def _read_environment_once(session: requests.Session) -> None:
    """Without a proxy in the environment, read it once here, not on every request: requests
    looks up proxies, netrc and CA bundle variables per request (a profile put ~7% of a worker's
    CPU there). A CA bundle variable still applies. With a proxy variable set, requests keeps
    reading the environment itself (its NO_PROXY rules included)."""
    names = {name.lower() for name in os.environ}
    if names & set(_PROXY_VARIABLES):
        return
    bundle = next((os.environ[name] for name in _CA_BUNDLE_VARIABLES if os.environ.get(name)), None)
    if bundle:
        session.verify = bundle
    session.trust_env = False


def send(session: requests.Session, method: str, url: str, **kwargs: Any) -> requests.Response:
    """Perform one request; network failures become typed, retryable errors."""
    try:
        return session.request(method, url, **kwargs)
    except requests.RequestException as exc:
        counter = getattr(session, "call_counter", None)
        if counter is not None:
            counter.count("error")
        raise _typed(exc, method, url) from exc


def _typed(exc: requests.RequestException, method: str, url: str) -> ClientError:
    """The error class the task acts on for a request that got no answer."""
    if isinstance(exc, requests.ConnectTimeout):
        return RetryableError(f"connect timeout: {method} {_path(url)}")
    if isinstance(exc, requests.ReadTimeout):
        return UnknownOutcome(f"read timeout: {method} {_path(url)}")
    if isinstance(exc, requests.ConnectionError):
        return RetryableError(f"connection failed: {method} {_path(url)}")
    return RetryableError(f"request failed: {method} {_path(url)}: {type(exc).__name__}")


def _path(url: str) -> str:
    return requests.utils.urlparse(url).path


def body_excerpt(response: requests.Response, limit: int = 300) -> str:
    return (response.text or "").strip().replace("\n", " ")[:limit]


def raise_for_status(
    response: requests.Response,
    what: str,
    *,
    default_retry_after: float,
    describe: Callable[[requests.Response], str] = body_excerpt,
) -> None:
    """Map a non-2xx answer to the error class the task acts on (401 is the caller's job)."""
    status = response.status_code
    if status < 300:
        return
    detail = f"{what}: HTTP {status}: {mask_emails(describe(response))}"
    if status == 429:
        wait = retry_after_seconds(response.headers.get("Retry-After"), default_retry_after)
        raise Throttled(detail, retry_after=wait)
    if status >= 500 or status in (408, 425):
        raise RetryableError(detail, status=status)
    if 400 <= status < 500:
        raise PermanentError(detail, status=status)
    raise ClientError(detail, status=status)


class BearerClient(ABC):
    """A vendor API behind an OAuth client-credentials token shared by every worker.

    Thread-safety: one instance per worker process (never shared across a fork), used by every
    thread of it: the session as `new_session` says, the token through `SharedToken` (a lock per
    process and one in Redis), the gate (the limiter) in Redis; nothing else changes after init.
    """

    vendor = ""

    def __init__(
        self,
        tenant: Tenant,
        r: redis.Redis,
        timeout: tuple[float, float],
        session: requests.Session | None = None,
        gate: Callable[[], None] | None = None,
        box: SecretBox | None = None,
    ) -> None:
        """`gate` runs right before every API request (not token requests): the rate limiter;
        `box` seals the cached token (pipeline/clients/tokens.py)."""
        self.tenant = tenant
        self.timeout = timeout
        self.session = session or new_session()
        self.gate = gate or (lambda: None)
        self.token = SharedToken(r, tenant.name, self.vendor.lower(), self._fetch_token, box)
        self.calls = CallCounter(r, tenant.name, self.vendor.lower())
        self.calls.attach(self.session)

    @abstractmethod
    def _fetch_token(self) -> dict[str, Any]:
        """The vendor's token response (access_token, expires_in, ...)."""

    @abstractmethod
    def _base_url(self, token: dict[str, Any]) -> str:
        """Where API calls go (SFMC names it in the token response)."""

    def check_credentials(self) -> None:
        """Fetch a fresh token (not the cached one): raises the ClientError that says why the
        vendor refused it (PermanentError for bad credentials, RetryableError when unreachable)."""
        self.token.renew()

    def _authorized(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """Send with the shared bearer token; on 401 refresh once and send again."""
        for _attempt in (1, 2):
            token = self.token.get()
            self.gate()  # after the token is in hand, so a slow token fetch cannot bunch requests
            response = send(
                self.session,
                method,
                self._base_url(token).rstrip("/") + path,
                headers={"Authorization": f"Bearer {token['access_token']}", "Accept": "application/json"},
                timeout=self.timeout,
                **kwargs,
            )
            if response.status_code != 401:
                return response
            self.token.invalidate(token["access_token"])
        raise Unauthorized(f"{self.vendor} {path}: 401 after token refresh", status=401)
