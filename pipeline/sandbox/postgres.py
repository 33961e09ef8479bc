"""A PostgreSQL server of our own on loopback, for the integration tests and the demo's
`kill-postgres` chaos: Debian's `postgresql` binaries, a fresh cluster in a temporary directory, a
free port.

PostgreSQL refuses to run as root: as root, the cluster belongs to the `postgres` user (Debian's
package makes it) and its commands run as that user (the server still our own child process).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from pipeline.sandbox import processes

DEBIAN_BIN = Path("/usr/lib/postgresql")


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries here (Debian: apt-get install postgresql)."""


def binaries() -> Path:
    """The newest installed version's bin directory."""
    found = sorted(DEBIAN_BIN.glob("*/bin/postgres"), key=lambda p: int(p.parent.parent.name))
    if not found:
        raise PostgresUnavailable("no PostgreSQL server: apt-get install postgresql (Debian)")
    return found[-1].parent


def _owner() -> str | None:
    """The user the cluster runs as: `postgres` when we are root, else ourselves."""
    return "postgres" if os.geteuid() == 0 else None


def _as_owner() -> dict[str, object]:
    user = _owner()
    return {"user": user, "group": user, "extra_groups": []} if user else {}


class Postgres:
    """One cluster, one database `rokt` of the user `rokt` (password auth over TCP on loopback)."""

    def __init__(self, log_dir: Path, password: str = "rokt-history-password") -> None:
        self.bin = binaries()
        self.port = processes.free_port()
        self.password = password
        self.log_dir = log_dir
        self.data = Path(tempfile.mkdtemp(prefix="rsf-postgres-"))
        self.child: processes.Child | None = None

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://rokt:{self.password}@127.0.0.1:{self.port}/rokt"

    def start(self, timeout: float = 60) -> Postgres:
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(self.data, owner.pw_uid, owner.pw_gid)
        pwfile = self.data / "pw"
        subprocess.run(
            ["sh", "-c", f"umask 077; printf '%s' '{self.password}' > {pwfile}"], check=True, **_as_owner()
        )
        subprocess.run(
            [str(self.bin / "initdb"), "-D", str(self.data / "db"), "-U", "rokt", "--auth=scram-sha-256",
             f"--pwfile={pwfile}", "-E", "UTF8", "--locale=C"],
            check=True,
            capture_output=True,
            **_as_owner(),
        )  # fmt: skip
        self.child = self._start_server()
        self.wait_ready(timeout)
        subprocess.run(
            [str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "rokt", "rokt"],
            env={**os.environ, "PGPASSWORD": self.password},
            check=True,
            capture_output=True,
        )
        return self

    def _start_server(self) -> processes.Child:
        argv = [
            str(self.bin / "postgres"), "-D", str(self.data / "db"), "-p", str(self.port),
            "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.data}",
            "-c", "fsync=on", "-c", "max_connections=200",
        ]  # fmt: skip
        return processes.Child("postgres", argv, dict(os.environ), self.log_dir, user=_owner())

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done = subprocess.run(
                [str(self.bin / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)], capture_output=True
            )
            if done.returncode == 0:
                return
            if self.child is not None and not self.child.alive():
                raise RuntimeError(f"postgres exited: {self.child.output()[-2000:]}")
            time.sleep(0.2)
        raise TimeoutError(f"postgres on :{self.port} not ready after {timeout:.0f} s")

    def kill(self) -> None:
        """SIGKILL the server (a crash): the next start recovers from its WAL."""
        if self.child is not None:
            self.child.kill()
            self.child.process.wait(10)

    def restart(self) -> None:
        if self.child is not None:
            self.child.stop()
        self.child = self._start_server()
        self.wait_ready()

    def stop(self) -> None:
        if self.child is not None:
            self.child.stop()
            self.child = None
        shutil.rmtree(self.data, ignore_errors=True)
