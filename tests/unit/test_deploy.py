"""The deployment files, checked without a Docker engine: docker-compose.yml (Debian's docker-compose
`config` and the file's own rules), .env.example against the settings table, the Dockerfile's lint,
and the runbook against the alert rules."""

from __future__ import annotations

import re
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.infra.queues import (
    ALL_QUEUES,
    EVENT_JOBS_QUEUE,
    RENDER_WORKER_QUEUES,
    ROKT_WAIT_QUEUE,
    ROKT_WORKER_QUEUES,
)
from pipeline.settings import SETTINGS_TABLE, load_settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "Dockerfile"
RUNBOOK = ROOT / "docs" / "operations.md"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"

# read by docker-compose.yml only, not by the service (so not in the settings table)
COMPOSE_ONLY = {
    "REDIS_PASSWORD",
    "REDIS_MAXMEMORY",
    "REDIS_APPENDFSYNC",
    "RABBITMQ_PASSWORD",
    "POSTGRES_PASSWORD",
}
# the processes of the image, and the health check each runs
APP_ROLES = {"web": "web", "worker": "worker", "beat": "beat", "exporter": "exporter"}
SECRET_NAME = re.compile(r"SECRET|PASSWORD|_PASS$|_AUTH$|TOKEN|REDIS_URL|REDISCLI_AUTH|BROKER_URL|BROKER_API")
INTERPOLATION = re.compile(r"\$\{([A-Z][A-Z0-9_]*)(?::?[-?][^}]*)?\}")
PLACEHOLDER = "CHANGE_ME"


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def services() -> dict[str, dict]:
    return compose()["services"]


def env_example() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, sep, value = line.partition("=")
            assert sep and re.fullmatch(r"[A-Z][A-Z0-9_]*", name), f".env.example: not KEY=value: {line!r}"
            assert not value.startswith(("'", '"')), f".env.example: {name}: no quotes (1.29 and v2 differ)"
            values[name] = value
    return values


def role(name: str) -> str | None:
    """web, worker, beat, exporter for the services running those processes (worker-render,
    worker-rokt, worker-rokt-2...)."""
    base = re.sub(r"-(render|rokt)$", "", re.sub(r"-\d+$", "", name))
    return APP_ROLES.get(base)


def argv(service: dict) -> str:
    command = service.get("command", [])
    return " ".join(command) if isinstance(command, list) else command


# -- docker-compose config ----------------------------------------------------------------------


def run_compose(tmp_path: Path, env_text: str, *args: str) -> subprocess.CompletedProcess:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip(
            "docker-compose is not installed (Debian package docker-compose; `make test` installs it)"
        )
    env_file = tmp_path / ".env"
    env_file.write_text(env_text)
    # a clean environment: variables of the calling shell would override .env in the interpolation
    return subprocess.run(
        [binary, "--env-file", str(env_file), "-f", str(COMPOSE), "--project-directory", str(ROOT), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        check=False,
    )


def test_compose_file_is_valid_for_docker_compose_with_the_example_env(tmp_path):
    every = ["--profile", "monitoring", "--profile", "sandbox", "--profile", "replica"]
    for profiles in ([], every):
        done = run_compose(tmp_path, ENV_EXAMPLE.read_text(), *profiles, "config", "-q")
        assert done.returncode == 0, done.stderr


def test_compose_refuses_to_render_without_the_required_secrets(tmp_path):
    for name in ("REDIS_PASSWORD", "SECRET_KEY", "FLOWER_BASIC_AUTH"):
        text = "\n".join(
            line for line in ENV_EXAMPLE.read_text().splitlines() if not line.startswith(f"{name}=")
        )
        done = run_compose(tmp_path, text + "\n", "config", "-q")
        assert done.returncode != 0, name
        assert name in done.stderr


def test_profiles_keep_prometheus_and_the_simulators_optional():
    profiles = {name: service.get("profiles") for name, service in services().items()}
    assert profiles.pop("prometheus") == ["monitoring"] and profiles.pop("sandbox") == ["sandbox"]
    assert profiles.pop("redis-replica") == ["replica"]
    assert not any(profiles.values()), "the rest runs by default"


# -- the file's own rules -----------------------------------------------------------------------


def test_every_service_has_a_health_check_a_restart_policy_limits_and_log_rotation():
    for name, service in services().items():
        test = service.get("healthcheck", {}).get("test")
        assert test and test[0] in ("CMD", "CMD-SHELL"), name
        assert service.get("restart") == "unless-stopped", name
        assert service.get("mem_limit") and service.get("cpus"), name
        logging = service.get("logging", {})
        assert logging.get("driver") == "json-file", name
        assert {"max-size", "max-file"} <= set(logging.get("options", {})), name


def test_the_app_processes_use_their_own_healthcheck_command():
    found = set()
    for name, service in services().items():
        if role(name):
            test = service["healthcheck"]["test"]
            assert test[:4] == ["CMD", "rokt-sfmc", "healthcheck", role(name)], name
            found.add(role(name))
    assert found == set(APP_ROLES.values())


def test_workers_have_stable_node_names():
    workers = {name: s for name, s in services().items() if re.search(r"celery .*\bworker\b", argv(s))}
    assert workers
    for name, service in workers.items():
        assert role(name) == "worker", f"{name}: name worker services worker-<stage>[-<n>]"
        assert f"--hostname={name}@%h" in service["command"], name
        assert not any(arg.startswith("--hostname") for arg in service["healthcheck"]["test"][4:]), (
            f"{name}: the health check finds the worker by its container hostname (%h)"
        )
        assert service.get("hostname"), f"{name}: a fixed container hostname keeps %h stable"


def test_the_rokt_stage_runs_on_threads_and_everything_else_on_prefork():
    """worker-rokt: the rokt queue on a threads pool; worker-render: every other shared queue on
    prefork; between them every queue is served, the Rokt stage by threads alone."""
    svc = services()
    served: dict[str, set[str]] = {}
    for name in ("worker-render", "worker-rokt"):
        command = svc[name]["command"]
        pool = next(arg.split("=", 1)[1] for arg in command if arg.startswith("--pool="))
        served.setdefault(pool, set()).update(command[command.index("-Q") + 1].split(","))
    assert served == {"threads": set(ROKT_WORKER_QUEUES), "prefork": set(RENDER_WORKER_QUEUES)}
    assert set(ALL_QUEUES) | {ROKT_WAIT_QUEUE, EVENT_JOBS_QUEUE} == served["threads"] | served["prefork"]


def test_no_secret_is_written_in_the_compose_file():
    checked = set()
    for name, service in services().items():
        for key, value in (service.get("environment") or {}).items():
            if SECRET_NAME.search(key):
                checked.add(key)
                value = str(value)
                assert INTERPOLATION.search(value), f"{name}: {key} must come from .env"
                literal = INTERPOLATION.sub("", value)
                allowed = r"(redis://:@redis:6379/\d+|amqp://rokt:@rabbitmq:5672/rokt|http://rokt:@rabbitmq:15672/api/)?"
                assert re.fullmatch(allowed, literal), f"{name}: {key}: {literal!r}"
        assert "env_file" not in service, f"{name}: each service lists the variables it needs"
    assert {"SECRET_KEY", "REDIS_URL", "BROKER_URL", "FLOWER_BASIC_AUTH"} <= checked
    code = re.sub(r"^\s*#.*$", "", COMPOSE.read_text(), flags=re.M)
    assert not re.search(r"requirepass\s+[^$\s]", code)
    assert not re.search(r"--(basic[-_]auth|requirepass)", code)


def test_each_role_gets_only_the_settings_it_reads():
    svc = services()
    env = {name: set(s.get("environment") or {}) for name, s in svc.items()}
    assert "SECRET_KEY" not in env["beat"] | env["flower"]
    assert not {"SFMC_APP_CLIENT_SECRET", "ROKT_CLIENT_SECRET"} & (
        env["beat"] | env["flower"] | env["exporter"]
    )
    assert "FLOWER_BASIC_AUTH" not in env["web"] | env["worker-render"] | env["beat"] | env["exporter"]
    assert env["sandbox"] == set(), "the simulators get none of the production settings"
    for name in env:
        if role(name) or name == "flower":
            assert {"REDIS_URL", "BROKER_URL"} <= env[name], name


def test_redis_has_a_password_memory_limit_noeviction_and_aof_on_the_internal_network():
    redis = services()["redis"]
    script = " ".join(redis.get("entrypoint") or []) + argv(redis)
    assert re.search(r"requirepass \$\$REDIS_PASSWORD", script)
    assert re.search(r"--maxmemory \S+", script) and "--maxmemory-policy noeviction" in script
    assert "--appendonly yes" in script and '--appendfsync "$$REDIS_APPENDFSYNC"' in script
    assert "REDIS_PASSWORD" not in argv(redis), "the password is read from stdin, not argv"
    assert "PONG" in " ".join(redis["healthcheck"]["test"]), "redis-cli ping exits 0 on NOAUTH"
    assert "ports" not in redis
    networks = compose()["networks"]
    assert redis["networks"] == ["backend"] and networks["backend"].get("internal") is True


def test_only_the_web_port_is_public():
    assert services()["web"].get("ports"), "the web port is published"
    for name, service in services().items():
        for port in service.get("ports", []):
            if name != "web":
                assert str(port).startswith("127.0.0.1:"), f"{name}: {port} only on the host's loopback"


def test_flower_password_only_in_its_environment_and_offline_workers_purged():
    flower = services()["flower"]
    command = argv(flower)
    assert "celery -A tasks flower" in command and "--purge_offline_workers=" in command
    assert "basic" not in command.replace("FLOWER_BASIC_AUTH", "")
    assert INTERPOLATION.fullmatch(flower["environment"]["FLOWER_BASIC_AUTH"])
    # Flower turns every FLOWER_* variable into an option and fails on an unknown one
    flower_options = [k for k in flower["environment"] if k.startswith("FLOWER_")]
    assert flower_options == ["FLOWER_BASIC_AUTH", "FLOWER_BROKER_API"]
    assert "broker_api" not in command, "the management API's password only in the environment"


def test_flower_runs_with_the_conf_that_puts_its_metrics_behind_the_basic_auth(monkeypatch):
    """deploy/flowerconfig.py (the real 401/200 is tests/integration/test_flower.py): compose passes
    it, relative to the image's WORKDIR, where the Dockerfile copies it; it sets no Flower option
    (tornado reads any top-level name matching one as its value, over FLOWER_*)."""
    conf = "deploy/flowerconfig.py"
    assert f"--conf={conf}" in argv(services()["flower"])
    workdir = re.search(r"^WORKDIR (\S+)$", DOCKERFILE.read_text(), re.M).group(1)
    assert workdir == "/app" and re.search(rf"^COPY {conf} \./deploy/$", DOCKERFILE.read_text(), re.M)

    from flower.options import default_options
    from flower.views.monitor import Metrics

    monkeypatch.setattr(Metrics, "get", Metrics.get)  # put back after the test
    original = Metrics.get
    for _ in range(2):  # executing it twice wraps once
        namespace = runpy.run_path(str(ROOT / conf))
    assert Metrics.get is not original and Metrics.get.__wrapped__ is original
    assert not set(namespace) & set(default_options)


def test_monitoring_profile_runs_prometheus_on_the_exporter():
    svc = services()
    exporter = svc["exporter"]
    assert argv(exporter).startswith("rokt-sfmc exporter") and "ports" not in exporter
    prometheus = svc["prometheus"]
    assert prometheus["profiles"] == ["monitoring"]
    assert "./deploy/prometheus:/etc/prometheus:ro" in prometheus["volumes"]
    assert ":latest" not in COMPOSE.read_text()
    config = ROOT / "deploy" / "prometheus" / "prometheus.yml"
    if config.exists():
        assert "exporter:9808" in config.read_text()


def test_the_app_services_run_on_a_read_only_root_filesystem():
    """Our image's processes write nothing to disk: read-only root, a small /tmp tmpfs, gunicorn's
    heartbeat files in /dev/shm, no gunicorn control socket, Flower without its state file."""
    svc = services()
    ours = [name for name, service in svc.items() if service.get("image") == "rokt-sfmc:local"]
    assert {"web", "worker-render", "worker-rokt", "beat", "flower", "exporter", "sandbox"} <= set(ours)
    for name in ours:
        assert svc[name].get("read_only") is True, name
        assert any(str(t).split(":")[0] == "/tmp" for t in svc[name].get("tmpfs", [])), name
    web = argv(svc["web"])
    assert "--worker-tmp-dir=/dev/shm" in web and "--no-control-socket" in web
    assert "--persistent=False" in argv(svc["flower"])
    cmd = re.search(r"^CMD (\[.*\])$", DOCKERFILE.read_text(), re.M).group(1)
    assert "--worker-tmp-dir=/dev/shm" in cmd and "--no-control-socket" in cmd, "the image's default too"


def test_the_tenants_folder_is_mounted_read_only():
    mounted = set()
    for name, service in services().items():
        if role(name) in ("web", "worker", "exporter"):
            assert "./deploy/tenants:/etc/rokt-sfmc/tenants:ro" in service["volumes"], name
            mounted.add(role(name))
    assert mounted == {"web", "worker", "exporter"}


# -- .env.example -------------------------------------------------------------------------------


def test_env_example_lists_exactly_the_settings_table_and_the_compose_variables():
    listed = set(env_example())
    table = {name for name, _meaning, _default in SETTINGS_TABLE}
    assert listed - COMPOSE_ONLY == table, (sorted(table - listed), sorted(listed - table - COMPOSE_ONLY))
    assert listed >= COMPOSE_ONLY
    used = set(INTERPOLATION.findall(COMPOSE.read_text()))
    assert used <= listed, sorted(used - listed)


def test_env_example_holds_no_secret_and_its_placeholders_cannot_run():
    values = env_example()
    secret_names = {name for name in values if SECRET_NAME.search(name) and name != "REDIS_URL"}
    assert {"SECRET_KEY", "JB_JWT_SECRET", "REDIS_PASSWORD"} <= secret_names
    for name in secret_names:
        value = values[name]
        assert value in ("", PLACEHOLDER) or value.endswith(":" + PLACEHOLDER), name
    with pytest.raises(ValueError, match="SECRET_KEY"):
        load_settings({"SECRET_KEY": values["SECRET_KEY"]})
    assert "token_urlsafe" in ENV_EXAMPLE.read_text(), "says how to generate SECRET_KEY"
    # the placeholders that would otherwise work are refused by the services' commands
    redis = " ".join(services()["redis"]["entrypoint"])
    assert f"*{PLACEHOLDER}*" in redis and f"*{PLACEHOLDER}*" in argv(services()["flower"])
    assert f"*{PLACEHOLDER}*" in " ".join(services()["rabbitmq"]["entrypoint"])
    assert f"*{PLACEHOLDER}*" in " ".join(services()["postgres"]["entrypoint"])


def test_rabbitmq_is_the_broker_of_every_app_process_with_its_password_from_env_only():
    svc = services()
    rabbitmq = svc["rabbitmq"]
    assert rabbitmq["image"].startswith("rabbitmq:") and "management" in rabbitmq["image"]
    assert rabbitmq["networks"] == ["backend"] and "ports" not in rabbitmq
    assert INTERPOLATION.fullmatch(rabbitmq["environment"]["RABBITMQ_DEFAULT_PASS"])
    assert "RABBITMQ_PASSWORD" not in " ".join(rabbitmq["entrypoint"]).replace("'RABBITMQ_PASSWORD:", "")
    assert "rabbitmq-data:/var/lib/rabbitmq" in rabbitmq["volumes"] and rabbitmq.get("hostname")
    assert "rabbitmq-diagnostics" in rabbitmq["healthcheck"]["test"]
    apps = [name for name, service in svc.items() if service.get("image") == "rokt-sfmc:local"]
    assert {"web", "worker-render", "worker-rokt", "beat", "flower", "exporter"} <= set(apps)
    for name in apps:
        service = svc[name]
        if name != "sandbox":
            assert service["environment"]["BROKER_URL"].startswith("amqp://rokt:${RABBITMQ_PASSWORD"), name
            assert service["depends_on"]["rabbitmq"]["condition"] == "service_healthy", name


# -- Dockerfile ---------------------------------------------------------------------------------


def test_dockerfile_lint():
    lines = [
        line for line in DOCKERFILE.read_text().splitlines() if line.strip() and not line.startswith("#")
    ]
    base = next(line.split()[1] for line in lines if line.startswith("FROM "))
    args = dict(re.findall(r"^ARG (\w+)=(\S+)", DOCKERFILE.read_text(), re.M))
    base = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], base)
    assert re.fullmatch(r"python:3\.11[\w.-]*(@sha256:[0-9a-f]{64})?", base) and "latest" not in base
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert not any(line.startswith("ADD ") for line in lines)
    text = DOCKERFILE.read_text()
    assert re.search(r'^CMD \["', text, re.M), "exec form"
    runs = re.findall(r"^RUN (.*?)(?<!\\)$", text, re.M | re.S)
    assert any("pip install" in run for run in runs), "the RUN lines were read"
    for run in runs:
        if "pip install" in run:
            assert "--no-cache-dir" in run
        if "apt-get install" in run:
            assert "--no-install-recommends" in run and "rm -rf /var/lib/apt/lists" in run
    assert re.search(r"pip install [^\n]*\.(\s|$)", text) and not re.search(r"\.\[(demo|dev)", text), (
        "no extras"
    )
    hadolint = shutil.which("hadolint") or shutil.which("hadolint", path=str(ROOT / ".venv" / "bin"))
    if hadolint:
        done = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stdout + done.stderr


# -- supply chain: locks with hashes, used by the image and by CI -------------------------------

LOCKS = (ROOT / "requirements.lock", ROOT / "requirements-dev.lock")
MAKEFILE = ROOT / "Makefile"


def lock_pins(path: Path) -> dict[str, str]:
    """name -> version of each `name==version \\` entry; asserts every entry carries a hash."""
    pins = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", path.read_text()):
        found = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[a-z0-9,._-]+\])?==(\S+)", block)  # [extras]
        if found:
            assert "--hash=sha256:" in block, f"{path.name}: {found.group(1)} without a hash"
            pins[re.sub(r"[-_.]+", "-", found.group(1)).lower()] = found.group(2)
    return pins


def test_locks_pin_every_requirement_with_hashes_within_the_floors():
    from packaging.requirements import Requirement
    from setuptools.config.setupcfg import read_configuration

    runtime, dev = (lock_pins(path) for path in LOCKS)
    assert runtime and dev
    assert {name: dev.get(name) for name in runtime} == runtime, "the dev lock has the image's versions"
    options = read_configuration(str(ROOT / "setup.cfg"))["options"]
    for lock, requirements in (
        (runtime, options["install_requires"]),
        (dev, [r for extra in ("dev", "bench", "demo") for r in options["extras_require"][extra]]),
    ):
        for line in requirements:
            requirement = Requirement(line)
            name = re.sub(r"[-_.]+", "-", requirement.name).lower()
            assert name in lock, f"{name} is not locked: make lock"
            assert requirement.specifier.contains(lock[name], prereleases=True), (
                f"{name}=={lock[name]} is outside {requirement.specifier}: make lock"
            )
    assert {"setuptools", "wheel"} <= set(runtime), "the build backend is locked too (--no-build-isolation)"


def lock_requirements(path: Path) -> list:
    """Each entry of a lock as a Requirement, its environment marker included."""
    from packaging.requirements import Requirement

    entries = re.findall(r"^([A-Za-z0-9][^\n]*?)\s*\\$", path.read_text(), re.M)
    return [Requirement(entry) for entry in entries]


def supported_pythons() -> tuple[str, list[str]]:
    """setup.cfg's floor and supported minor versions (what the Makefile and the README state)."""
    from setuptools.config.setupcfg import read_configuration

    config = read_configuration(str(ROOT / "setup.cfg"))
    floor = re.search(r">=\s*([\d.]+)", str(config["options"]["python_requires"])).group(1)
    classifiers = config["metadata"]["classifiers"]
    return floor, [
        c.rsplit(" ", 1)[1]
        for c in classifiers
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    ]


def missing_from_lock(locked: list, roots: list[str], python: str) -> list[str]:
    """What a Linux CPython `python` would need and the lock does not give it: the requirement tree
    from `roots`, walked through the installed packages' metadata with each marker evaluated for
    `python` (a package this Python does not have installed is checked, not walked into)."""
    from importlib import metadata

    from packaging.markers import default_environment
    from packaging.requirements import Requirement

    def canonical(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    minor = ".".join(python.split(".")[:2])
    env = default_environment() | {
        "python_version": minor,
        "python_full_version": python,
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "sys_platform": "linux",
        "platform_system": "Linux",
    }
    pins = {canonical(r.name): r for r in locked if r.marker is None or r.marker.evaluate(env)}
    missing, seen = [], set()
    queue = [(Requirement(line), {""}, "setup.cfg") for line in roots]
    while queue:
        requirement, extras, parent = queue.pop()
        if requirement.marker and not any(requirement.marker.evaluate(env | {"extra": e}) for e in extras):
            continue
        name = canonical(requirement.name)
        pin = pins.get(name)
        if pin is None:
            missing.append(f"{name} (for {parent})")
            continue
        version = next(iter(pin.specifier)).version
        if not requirement.specifier.contains(version, prereleases=True):
            missing.append(f"{name}{requirement.specifier} (for {parent}; the lock has {version})")
        for extra in {""} | requirement.extras:
            if (name, extra) in seen:
                continue
            seen.add((name, extra))
            try:
                requires = metadata.distribution(name).requires or []
            except metadata.PackageNotFoundError:
                continue
            queue += [(Requirement(line), {"", extra}, name) for line in requires]
    return missing


def test_each_lock_holds_what_every_supported_python_needs():
    """One lock serves every supported Python: a dependency that only some Pythons need (redis's
    async-timeout below 3.11.3) must be in it with its marker, or pip refuses the lock there."""
    from setuptools.config.setupcfg import read_configuration

    options = read_configuration(str(ROOT / "setup.cfg"))["options"]
    runtime = options["install_requires"]
    dev = runtime + [r for extra in ("dev", "bench", "demo") for r in options["extras_require"][extra]]
    floor, minors = supported_pythons()
    pythons = [floor + ".0"] + [f"{minor}.{patch}" for minor in minors for patch in (0, 99)]
    for path, roots in zip(LOCKS, (runtime, dev), strict=True):
        locked = lock_requirements(path)
        for python in pythons:
            assert not missing_from_lock(locked, roots, python), f"{path.name} on Python {python}: make lock"


def test_the_makefile_refuses_a_python_below_the_floor_in_one_line():
    """The floor comes from setup.cfg; the check runs under the Python it judges."""
    floor, minors = supported_pythons()
    script = ROOT / "scripts" / "check_python.py"
    major, minor = sys.version_info[:2]  # a floor just above the Python running this test
    done = subprocess.run(
        [sys.executable, str(script), f"{major}.{minor + 1}", " ".join(minors)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and done.stderr == ""
    assert done.stdout.count("\n") == 1 and f"needs Python {major}.{minor + 1} or newer" in done.stdout
    assert sys.executable in done.stdout and f"supported: {', '.join(minors)}" in done.stdout
    done = subprocess.run(
        [sys.executable, str(script), floor, " ".join(minors)], capture_output=True, text=True
    )
    assert (done.returncode, done.stdout) == (0, "")
    make = MAKEFILE.read_text()
    assert "scripts/check_python.py $(PYTHON_FLOOR)" in make and "$(BIN)/python: | python-check" in make


def test_the_image_and_ci_install_from_the_locks_with_hashes():
    text = DOCKERFILE.read_text()
    assert re.search(r"pip install [^\n]*--require-hashes [^\n]*requirements\.lock", text)
    assert re.search(r"pip install [^\n]*--no-deps [^\n]*\.(\s|$)", text), "then the project alone"
    make = MAKEFILE.read_text()
    assert re.search(r"pip install [^\n]*--require-hashes -r requirements-dev\.lock", make)
    assert re.search(r"pip install [^\n]*--no-deps [^\n]*-e \.", make)
    assert not re.search(r"pip install [^\n]*-e '?\.\[", make), "no unlocked install of the extras"
    assert re.search(r"^test: [^\n]*\baudit\b", make, re.M), "make test runs pip-audit"
    assert re.search(r"pip-audit [^\n]*requirements\.lock", make)
    assert re.search(r"^lock:", make, re.M) and "--generate-hashes" in make


# -- runbook ------------------------------------------------------------------------------------

SECTIONS = (
    "adding-a-tenant",
    "sfmc-credentials-rejected",
    "dead-letters",
    "rokt-429-storm",
    "redis-down",
    "redis-full",
    "history-store-behind",
    "frozen-worker",
    "memory-growth",
    "rotating-secrets",
    "scaling-workers",
)


def runbook_sections() -> dict[str, str]:
    """anchor -> text of each `## Title {#anchor}`-less section: anchors are GitHub's slugs."""
    found = {}
    for block in re.split(r"^## ", RUNBOOK.read_text(), flags=re.M)[1:]:
        title, _, body = block.partition("\n")
        slug = re.sub(r"[^a-z0-9 -]", "", title.strip().lower()).replace(" ", "-")
        found[slug] = body
    return found


def test_runbook_has_every_section_each_starting_from_an_alert():
    sections = runbook_sections()
    for anchor in SECTIONS:
        assert anchor in sections, anchor
        first = sections[anchor].strip().splitlines()[0]
        assert first.startswith("**Alert"), f"{anchor}: starts from the alert that sends you there"


def test_every_alert_has_its_runbook_section():
    sections = runbook_sections()
    rules = [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]
    assert rules, "alerts.yml holds alerts"
    for rule in rules:
        url = rule["annotations"]["runbook_url"]
        anchor = url.split("#", 1)[1]
        assert url.startswith("docs/operations.md#") and anchor in sections, rule["alert"]
        assert rule["alert"] in sections[anchor].split("\n\n", 1)[0], f"{rule['alert']} opens {anchor}"


def test_runbook_commands_and_their_flags_exist():
    import argparse

    from pipeline.cli import build_parser

    commands = re.findall(r"(?<![\w/.-])rokt-sfmc ([^`\n|;&#(<]*)", RUNBOOK.read_text())
    assert commands
    for command in commands:
        parser = build_parser()
        for word in command.split():
            subcommands = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
            if word.startswith("-") and word != "-":  # `-`: stdin
                flag = word.split("=", 1)[0]
                assert flag in parser._option_string_actions, f"`rokt-sfmc {command}`: {flag}"
            elif subcommands and not word.startswith(("<", "[")):
                assert word in subcommands[0].choices, f"`rokt-sfmc {command}`: {word}"
                parser = subcommands[0].choices[word]


def test_the_aof_fsync_policy_is_one_choice_for_both_redis_services():
    """everysec by default; REDIS_APPENDFSYNC=always closes the lost-machine window (docs/architecture.md,
    Durability): the primary and its replica follow the same choice."""
    services = compose()["services"]
    for name in ("redis", "redis-replica"):
        service = services[name]
        assert service["environment"]["REDIS_APPENDFSYNC"] == "${REDIS_APPENDFSYNC:-everysec}", name
        assert '--appendfsync "$$REDIS_APPENDFSYNC"' in service["entrypoint"][-1], name
