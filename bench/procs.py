"""CPU time and resident memory of a process tree (a Celery worker and its pool children)."""

from __future__ import annotations

import threading

import psutil


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def cpu_seconds(pids: list[int]) -> float:
    """User + system seconds of each tree: live processes, plus children already reaped
    (a pool child recycled after max_tasks_per_child counts in its parent's children_*)."""
    total = 0.0
    for pid in pids:
        for index, proc in enumerate(_tree(pid)):
            try:
                times = proc.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
            if index == 0:
                total += times.children_user + times.children_system
    return total


class PeakRss:
    """Samples the peak RSS (VmHWM) of every process in the trees every `interval` seconds,
    so a pool child that is recycled mid-run still counts."""

    def __init__(self, pids: list[int], interval: float = 0.5) -> None:
        self.pids = pids
        self.interval = interval
        self.peak_by_pid: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def sample(self) -> None:
        for pid in self.pids:
            for proc in _tree(pid):
                try:
                    peak = _vm_hwm_bytes(proc.pid) or proc.memory_info().rss
                except (psutil.NoSuchProcess, OSError):
                    continue
                self.peak_by_pid[proc.pid] = max(self.peak_by_pid.get(proc.pid, 0), peak)

    def peak_mb(self) -> float:
        """The largest peak of any one process, in MiB."""
        self.sample()
        return round(max(self.peak_by_pid.values(), default=0) / 2**20, 1)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()


def rss_mb(pid: int) -> float:
    """The resident memory of one process now, in MiB."""
    return round(psutil.Process(pid).memory_info().rss / 2**20, 1)


def _vm_hwm_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0
