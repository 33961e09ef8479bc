"""Accessibility, checked in the browser: axe-core (vendored from npm for the tests only, with its
sha256 in vendor/axe.json) runs in a page or an iframe, and a test asserts that it found no
serious or critical violation (WCAG 2 A and AA rules, colour contrast among them)."""

from __future__ import annotations

import json
from pathlib import Path

VENDOR = Path(__file__).resolve().parent / "vendor"
AXE = VENDOR / "axe.min.js"
RECORD = json.loads((VENDOR / "axe.json").read_text())
BLOCKING = ("serious", "critical")
RULES = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


def violations(frame, impacts: tuple[str, ...] = BLOCKING) -> list[str]:
    """axe's violations of `impacts` in `frame` (a Playwright Page or Frame), one line each:
    rule, impact, what it asks, and the first elements that break it."""
    if not frame.evaluate("() => typeof window.axe === 'object'"):
        # evaluated by the DevTools protocol, so the page's CSP (script-src 'self') does not apply
        frame.evaluate(AXE.read_text() + "\n;undefined")
    options = {"runOnly": {"type": "tag", "values": RULES}, "resultTypes": ["violations"]}
    result = frame.evaluate("options => axe.run(document, options)", options)
    return [
        f"{v['id']} ({v['impact']}): {v['help']}; at {[n['target'] for n in v['nodes'][:3]]}"
        for v in result["violations"]
        if v["impact"] in impacts
    ]
