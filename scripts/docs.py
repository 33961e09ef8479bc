"""`make docs`: the tables in the docs that mirror code, rendered from the code.

A generated table sits between `<!-- make docs: NAME -->` and `<!-- end make docs -->` in a
Markdown file of docs/ (or the README); `make docs` rewrites what is between from the code, and
`--check` (run by tests/unit/test_docs.py) exits 1 naming every table that is stale, so a table
is never copied by hand and never drifts.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from anywhere: the project's packages first

BLOCK = re.compile(r"(<!-- make docs: (?P<name>[a-z-]+) -->\n)(?P<body>.*?)(<!-- end make docs -->)", re.S)


def _row(*cells: str) -> str:
    return "| " + " | ".join(cells) + " |"


def settings_table() -> str:
    from pipeline.settings import SETTINGS_TABLE

    lines = [_row("name", "meaning", "default"), _row("---", "---", "---")]
    for name, meaning, default in SETTINGS_TABLE:
        lines.append(_row(f"`{name}`", meaning, f"`{default}`" if default else "—"))
    return "\n".join(lines)


def retries_table() -> str:
    from pipeline.retry_policy import RETRY_TABLE

    lines = [_row("part", "condition", "class", "what happens"), _row("---", "---", "---", "---")]
    lines += [_row(*row) for row in RETRY_TABLE]
    return "\n".join(lines)


def data_extensions_table() -> str:
    from pipeline.dataextensions import markdown_table

    return markdown_table().strip()


def metrics_table() -> str:
    from pipeline.exporter import every_family

    lines = [_row("metric", "type", "labels", "meaning"), _row("---", "---", "---", "---")]
    for family in every_family():
        name = family.name + ("_total" if family.type == "counter" else "")
        labels = ", ".join(getattr(family, "_labelnames", ())) or "-"
        lines.append(_row(f"`{name}`", family.type, labels, family.documentation))
    return "\n".join(lines)


def performance_table() -> str:
    from bench.markdown import RESULTS, machine_line, performance_table

    results = json.loads(RESULTS.read_text())
    return (machine_line(results) + "\n" + performance_table(results)).strip()


TABLES: dict[str, Callable[[], str]] = {
    "settings": settings_table,
    "retries": retries_table,
    "data-extensions": data_extensions_table,
    "metrics": metrics_table,
    "performance": performance_table,
}


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def render(text: str) -> str:
    """`text` with every generated table rendered afresh (an unknown name is an error)."""

    def fill(match: re.Match[str]) -> str:
        name = match.group("name")
        if name not in TABLES:
            raise SystemExit(f"make docs: unknown table {name!r} (known: {', '.join(TABLES)})")
        return match.group(1) + TABLES[name]() + "\n" + match.group(4)

    return BLOCK.sub(fill, text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a generated table is stale")
    args = parser.parse_args(argv)
    stale, found = [], set()
    for path in documents():
        text = path.read_text()
        found.update(m.group("name") for m in BLOCK.finditer(text))
        fresh = render(text)
        if fresh != text:
            stale.append(path.relative_to(ROOT))
            if not args.check:
                path.write_text(fresh)
    missing = sorted(set(TABLES) - found)
    if missing:
        print(f"make docs: no document holds the table(s) {', '.join(missing)}", file=sys.stderr)
        return 1
    if args.check and stale:
        print(f"make docs: stale tables in {', '.join(map(str, stale))}: run `make docs`", file=sys.stderr)
        return 1
    print(f"make docs: {len(found)} tables {'checked' if args.check else 'written'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
