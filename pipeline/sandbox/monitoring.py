"""The exporter and Prometheus beside a sandbox stack: for the demo's `ops` figures and the tests.

`start_exporter` runs `rokt-sfmc exporter` as a child process on loopback; `Scraper` reads its
`/metrics` every few seconds in a thread (counting the scrapes that read Redis); `Prometheus`
runs Debian's `prometheus` binary on loopback against the exporter with the alert rules of
`deploy/prometheus/alerts.yml` (or a copy of them), when it is installed.
"""

from __future__ import annotations

import json
import shutil
import sys
import threading
from pathlib import Path
from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families

from pipeline.sandbox import processes

ALERT_RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "alerts.yml"
EXPORTER_JOB = "rokt-sfmc-exporter"  # the job name the rules' `up{job=...}` expects


def start_exporter(
    run_dir: Path, env: dict[str, str], port: int | None = None
) -> tuple[processes.Child, str]:
    """`rokt-sfmc exporter` on 127.0.0.1; returns the child and its base URL once it answers."""
    port = port or processes.free_port()
    argv = [sys.executable, "-m", "pipeline.cli", "exporter", "--port", str(port), "--host", "127.0.0.1"]
    child = processes.Child("exporter", argv, env, run_dir)
    url = f"http://127.0.0.1:{port}"
    processes.wait_until(lambda: processes.http_ok(f"{url}/healthz"), 30, "exporter", child)
    return child, url


class Scraper:
    """Reads `<url>/metrics` every `interval` seconds until stopped; `scrapes` counts the answers
    that read Redis (`rsf_redis_up 1`), `last` keeps the latest text."""

    def __init__(self, url: str, interval: float = 2.0) -> None:
        self.url = url.rstrip("/") + "/metrics"
        self.interval = interval
        self.scrapes = 0
        self.failures = 0
        self.last = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="metrics-scraper", daemon=True)

    def start(self) -> Scraper:
        self._thread.start()
        return self

    def scrape(self) -> str:
        answer = requests.get(self.url, timeout=10)
        if answer.status_code == 200 and "\nrsf_redis_up 1.0" in "\n" + answer.text:
            self.scrapes += 1
            self.last = answer.text
        else:
            self.failures += 1
        return answer.text

    def totals(self, sample: str, by: str) -> dict[str, float]:
        """The latest scrape's `sample` values summed by the label `by`."""
        sums: dict[str, float] = {}
        for family in text_string_to_metric_families(self.last):
            for s in family.samples:
                if s.name == sample:
                    key = s.labels.get(by, "")
                    sums[key] = sums.get(key, 0.0) + s.value
        return sums

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.scrape()
            except requests.RequestException:
                self.failures += 1
            self._stop.wait(self.interval)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(timeout=15)
        return self.scrapes


def prometheus_binary() -> str | None:
    return shutil.which("prometheus")


class Prometheus:
    """Prometheus on 127.0.0.1 with its own data directory under `run_dir`, scraping `targets`
    (host:port) every `interval` and evaluating `rules` as often."""

    def __init__(
        self, run_dir: Path, targets: list[str], rules: Path = ALERT_RULES, interval: str = "1s"
    ) -> None:
        binary = prometheus_binary()
        if binary is None:
            raise FileNotFoundError("prometheus is not installed (apt-get install prometheus)")
        self.dir = run_dir / "prometheus"
        self.dir.mkdir(parents=True, exist_ok=True)
        config = {
            "global": {"scrape_interval": interval, "evaluation_interval": interval},
            "rule_files": [str(rules.resolve())],
            "scrape_configs": [{"job_name": EXPORTER_JOB, "static_configs": [{"targets": targets}]}],
        }
        config_path = self.dir / "prometheus.yml"
        config_path.write_text(json.dumps(config, indent=2) + "\n")  # JSON is YAML
        self.port = processes.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._argv = [
            binary,
            f"--config.file={config_path}",
            f"--storage.tsdb.path={self.dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
        ]
        self._run_dir = run_dir
        self.child: processes.Child | None = None

    def start(self) -> Prometheus:
        self.child = processes.Child("prometheus", self._argv, {"PATH": "/usr/bin:/bin"}, self._run_dir)
        processes.wait_until(lambda: processes.http_ok(f"{self.url}/-/ready"), 30, "prometheus", self.child)
        return self

    def stop(self) -> None:
        if self.child is not None:
            self.child.stop()
            self.child = None

    def __enter__(self) -> Prometheus:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _get(self, path: str, **params: str) -> Any:
        answer = requests.get(f"{self.url}{path}", params=params, timeout=10)
        answer.raise_for_status()
        return answer.json()["data"]

    def alerts(self) -> list[dict[str, Any]]:
        """Every alert pending or firing now (`labels`, `state`, `annotations`, ...)."""
        return self._get("/api/v1/alerts")["alerts"]

    def firing(self) -> list[str]:
        return sorted({a["labels"]["alertname"] for a in self.alerts() if a["state"] == "firing"})

    def fired(self, within_seconds: float) -> list[str]:
        """The alerts that were firing at any evaluation in the last `within_seconds`."""
        window = f"{max(1, int(within_seconds))}s"
        found = self.query(f'group by (alertname) (max_over_time(ALERTS{{alertstate="firing"}}[{window}]))')
        return sorted(r["metric"]["alertname"] for r in found)

    def query(self, expr: str) -> list[dict[str, Any]]:
        return self._get("/api/v1/query", query=expr)["result"]

    def targets_up(self) -> bool:
        active = self._get("/api/v1/targets")["activeTargets"]
        return bool(active) and all(t["health"] == "up" for t in active)
