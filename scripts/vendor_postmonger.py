"""Refresh the vendored Postmonger from the npm registry (`make postmonger`).

Journey Builder's activity UI talks to Journey Builder through Postmonger; we serve it from our
own origin, never a CDN. This fetches the pinned version with `npm pack`, copies its script and
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

VENDOR = Path(__file__).resolve().parent.parent / "pipeline" / "web" / "static" / "activity" / "js"


def main(version: str) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        packed = subprocess.run(
            ["npm", "pack", f"postmonger@{version}", "--json"],
            cwd=tmp,
            check=True,
            capture_output=True,
            text=True,
        )
        info = json.loads(packed.stdout)[0]
        with tarfile.open(Path(tmp) / info["filename"]) as archive:
            script = archive.extractfile("package/postmonger.js").read()
            licence = archive.extractfile("package/LICENSE").read()
    VENDOR.mkdir(parents=True, exist_ok=True)
    (VENDOR / "postmonger.js").write_bytes(script)
    (VENDOR / "postmonger.LICENSE").write_bytes(licence)
    record = {
        "package": "postmonger",
        "version": info["version"],
        "file": "postmonger.js",
        "sha256": hashlib.sha256(script).hexdigest(),
        "integrity": info["integrity"],
        "source": f"https://registry.npmjs.org/postmonger/-/postmonger-{info['version']}.tgz",
    }
    (VENDOR / "postmonger.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"postmonger {record['version']} vendored, sha256 {record['sha256']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "0.0.16"))
