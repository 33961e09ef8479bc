"""A RabbitMQ of the machine for tests and benchmarks: a virtual host of their own, deleted after.

`RABBITMQ_URL` (default `amqp://guest:guest@127.0.0.1:5672//`) names the server; a run creates
`<prefix>-<random>` with `rabbitmqctl` (on the same machine: Debian's rabbitmq-server, which
`make test` installs when missing), gives the URL's user every permission on it, and deletes it
at the end, so runs never see each other's queues and nothing is purged on a shared server.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote, unquote, urlsplit, urlunsplit

DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672//"
HOW_TO_RUN = (
    "RabbitMQ not reachable at RABBITMQ_URL ({url}): {reason}. To run the RabbitMQ cases: "
    "`apt-get install rabbitmq-server` (or `make test`, which installs it), or point RABBITMQ_URL "
    "at a RabbitMQ 3.10+ on this machine (rabbitmqctl creates a vhost per run)"
)


class RabbitMQUnavailable(RuntimeError):
    """No RabbitMQ to run against (the message says why and how to get one)."""


def server_url() -> str:
    return os.environ.get("RABBITMQ_URL") or DEFAULT_URL


def with_vhost(url: str, vhost: str) -> str:
    """`url` with its virtual host replaced by `vhost`."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + quote(vhost, safe=""), parts.query, ""))


def _user(url: str) -> str:
    return unquote(urlsplit(url).username or "guest")


def reachable(url: str, timeout: float = 3.0) -> str | None:
    """None when RabbitMQ at `url` accepts a connection; otherwise why not."""
    from kombu import Connection

    try:
        with Connection(url, connect_timeout=timeout) as conn:
            conn.ensure_connection(max_retries=1)
    except Exception as exc:  # refused, auth, timeout: the reason is the point
        return f"{type(exc).__name__}: {exc}"
    return None


def _ctl(*args: str) -> None:
    done = subprocess.run(["rabbitmqctl", *args], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        output = (done.stderr or done.stdout).strip()[-300:]
        raise RabbitMQUnavailable(f"rabbitmqctl {args[0]} failed: {output}")


@contextmanager
def temporary_vhost(prefix: str = "rsf-test") -> Iterator[str]:
    """The URL of a new virtual host on the RabbitMQ of RABBITMQ_URL, deleted afterwards.
    Raises RabbitMQUnavailable (with how to get one) when the server or rabbitmqctl is missing."""
    url = server_url()
    why = reachable(url)
    if why is None and shutil.which("rabbitmqctl") is None:
        why = "rabbitmqctl not found (a vhost per run is made with it)"
    if why is not None:
        raise RabbitMQUnavailable(HOW_TO_RUN.format(url=_without_password(url), reason=why))
    vhost = f"{prefix}-{secrets.token_hex(4)}"
    _ctl("add_vhost", vhost)
    try:
        _ctl("set_permissions", "-p", vhost, _user(url), ".*", ".*", ".*")
        yield with_vhost(url, vhost)
    finally:
        subprocess.run(["rabbitmqctl", "delete_vhost", vhost], capture_output=True, timeout=60)


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" if parts.password else host
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
