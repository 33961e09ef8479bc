"""`make pythons`: install and run a short demo on the oldest and the newest supported Python.

The full suite runs on the default Python; this proves the one lock installs and runs from the
floor (the oldest patch release of the oldest supported minor found here, where environment
markers bite: async-timeout below 3.11.3) to the newest supported minor. Each Python gets its own
virtualenv (.venv-<version>) through `make install`, as a user would, then a demo that must lose
nothing and post no calendar event twice. A Python this machine lacks is skipped, saying so.
"""

from __future__ import annotations

import argparse
import configparser
import glob
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NAME = re.compile(r"python3(\.\d+)?$")


def supported_minors() -> tuple[str, list[str]]:
    """setup.cfg's floor (python_requires) and supported minors (classifiers), the one place they live."""
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    floor = re.search(r">=\s*([\d.]+)", config["options"]["python_requires"]).group(1)
    minors = re.findall(
        r"Programming Language :: Python :: (3\.\d+)\s*$", config["metadata"]["classifiers"], re.M
    )
    return floor, minors


def candidates() -> set[str]:
    """Interpreter files on PATH (pyenv's shims aside: they run only the selected version) and
    where Debian, pyenv and uv put them."""
    places = [d for d in os.environ.get("PATH", "").split(os.pathsep) if d and "shims" not in d]
    places += ["/usr/bin", "/usr/local/bin"]
    pyenv = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    places += glob.glob(os.path.join(pyenv, "versions", "*", "bin"))
    places += glob.glob(os.path.expanduser("~/.local/share/uv/python/*/bin"))
    found = set()
    for place in places:
        for path in glob.glob(os.path.join(place, "python3*")):
            if NAME.search(os.path.basename(path)) and os.access(path, os.X_OK):
                found.add(os.path.realpath(path))
    return found


def version_of(path: str) -> tuple[int, int, int] | None:
    probe = "import sys; print(sys.implementation.name, *sys.version_info[:3])"
    try:
        out = subprocess.run(
            [path, "-c", probe], capture_output=True, text=True, timeout=20, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    name, *numbers = out.split()
    return tuple(int(n) for n in numbers) if name == "cpython" else None


def pick(found: dict[str, tuple[int, int, int]], minor: str, oldest: bool) -> tuple[str, str] | None:
    wanted = tuple(int(n) for n in minor.split("."))
    matching = sorted((v, p) for p, v in found.items() if v[:2] == wanted)
    if not matching:
        return None
    version, path = matching[0] if oldest else matching[-1]
    return ".".join(map(str, version)), path


def run(command: list[str]) -> tuple[bool, float]:
    print(f"$ {' '.join(command)}", flush=True)
    started = time.monotonic()
    done = subprocess.run(command, cwd=ROOT, check=False)
    return done.returncode == 0, time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=100)
    parser.add_argument(
        "--only", choices=("oldest", "newest"), help="one of the two (CI checks the floor: its time budget)"
    )
    args = parser.parse_args()
    floor, minors = supported_minors()
    found = {path: v for path in sorted(candidates()) if (v := version_of(path))}
    results = []
    for label, minor, oldest in (("oldest", floor, True), ("newest", minors[-1], False)):
        if args.only and label != args.only:
            continue
        chosen = pick(found, minor, oldest)
        if chosen is None:
            results.append(
                f"SKIPPED {label} supported Python ({minor}): none on this machine (looked on PATH, in "
                f"/usr/bin, /usr/local/bin, pyenv's and uv's versions); install one to run this check"
            )
            continue
        version, path = chosen
        venv = f".venv-{version}"
        ok, install_s = run(["make", "--no-print-directory", "install", f"PYTHON={path}", f"VENV={venv}"])
        if not ok:
            results.append(f"FAILED {label} Python {version} ({path}): make install")
            continue
        demo = [
            f"{venv}/bin/rokt-sfmc",
            "demo",
            "--contacts",
            str(args.contacts),
            "--report",
            f"{venv}/demo.json",
        ]
        ok, demo_s = run(demo)
        verdict = "passed" if ok else "FAILED (lost or duplicated work; see the table above)"
        results.append(
            f"{verdict}: {label} Python {version} ({path}): install {install_s:.0f} s, "
            f"{args.contacts}-contact demo {demo_s:.0f} s"
        )
    print("\n".join(["", "make pythons:", *("  " + line for line in results)]))
    return 1 if any(line.startswith("FAILED") for line in results) else 0


if __name__ == "__main__":
    sys.exit(main())
