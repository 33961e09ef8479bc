"""Vendor a pinned front-end file from the npm registry (`make postmonger`, `make axe`).

Nothing is loaded from a CDN at run time: Postmonger (the activity UI's channel to Journey
Builder) is served from our own origin, and axe-core (the browser tests' accessibility check)
is injected by the tests. This fetches the pinned version with `npm pack` and copies its file and
licence next to a record of the version, the registry's integrity and the file's sha256, which a
unit test checks against the committed file.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# package -> (folder it is vendored into, its file inside the package, the licence file there)
VENDORED = {
    "postmonger": (ROOT / "pipeline" / "web" / "static" / "activity" / "js", "postmonger.js", "LICENSE"),
    "axe-core": (ROOT / "tests" / "browser" / "vendor", "axe.min.js", "LICENSE"),
}


def main(package: str, version: str) -> int:
    folder, name, licence_name = VENDORED[package]
    with tempfile.TemporaryDirectory() as tmp:
        packed = subprocess.run(
            ["npm", "pack", f"{package}@{version}", "--json"],
            cwd=tmp,
            check=True,
            capture_output=True,
            text=True,
        )
        info = json.loads(packed.stdout)[0]
        with tarfile.open(Path(tmp) / info["filename"]) as archive:
            script = archive.extractfile(f"package/{name}").read()
            licence = archive.extractfile(f"package/{licence_name}").read()
    stem = name.split(".")[0]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(script)
    (folder / f"{stem}.LICENSE").write_bytes(licence)
    record = {
        "package": package,
        "version": info["version"],
        "file": name,
        "sha256": hashlib.sha256(script).hexdigest(),
        "integrity": info["integrity"],
        "source": f"https://registry.npmjs.org/{package}/-/{package}-{info['version']}.tgz",
    }
    (folder / f"{stem}.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"{package} {record['version']} vendored, sha256 {record['sha256']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
