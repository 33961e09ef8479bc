"""The pages that stand in for Marketing Cloud around our frames, on another origin than the app:
`mc.html` frames App Settings (`?src=<web>/app/login`), `jb.html` + `jb.js` play Journey Builder
around the activity (real Postmonger). `rokt-sfmc sandbox up` serves them for people to click
through; the browser tests serve the same files."""

from pathlib import Path

HOSTS = Path(__file__).resolve().parent
