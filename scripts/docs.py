"""`make docs`: the tables in the docs that mirror code, rendered from the code.

A generated table sits between `<!-- make docs: NAME -->` and `<!-- end make docs -->` in a
Markdown file of docs/ (or the README); `make docs` rewrites what is between from the code, and
`--check` (run by tests/unit/test_docs.py) exits 1 naming every table that is stale, so a table
is never copied by hand and never drifts.
"""

from __future__ import annotations

import argparse
import ast
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
    from pipeline.delivery.retry_policy import RETRY_TABLE

    lines = [_row("part", "condition", "class", "what happens"), _row("---", "---", "---", "---")]
    lines += [_row(*row) for row in RETRY_TABLE]
    return "\n".join(lines)


def data_extensions_table() -> str:
    from pipeline.subscriptions.dataextensions import markdown_table

    return markdown_table().strip()


def metrics_table() -> str:
    from pipeline.ops.exporter import every_family

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


# Folders without a module docstring to speak for them: what each holds
FOLDERS = {
    "pipeline/web/static/activity": "the activity's page, running view, icons, Postmonger from npm",
    "pipeline/web/static/app": "App Settings' stylesheet and script",
    "pipeline/web/templates/app": "App Settings' pages (Jinja2)",
    "pipeline/stores/history_migrations": "the history store's schema, one Alembic migration a change",
    "pipeline/stores/history_migrations/versions": "the migrations, oldest first",
    "tests": "the suite (`make test`)",
    "tests/unit": "fakeredis, responses, hypothesis; mirrors the packages",
    "tests/integration": "real Redis, Celery workers and simulators in their own processes",
    "tests/e2e": "`rokt-sfmc demo`, with and without chaos; the live sandbox as the README runs it",
    "tests/browser": "the activity and App Settings in headless Chromium, framed by the sandbox's pages",
    "docs": "everything the README does not say",
    "docs/vendors": "the vendor facts the code relies on, with their public sources",
    "deploy": "what a deployment adds: Flower's settings, Prometheus rules, tenant files",
    "scripts": "the Makefile's helpers, each a command-line script",
}
CODE = ("pipeline", "tasks", "schemas", "bench", "scripts")  # every module listed
TOP = ("pipeline", "tasks", "schemas", "bench", "scripts", "celeryconfig.py", "tests", "docs", "deploy")
COLUMN = 26  # where the descriptions start


def summary(path: Path) -> str:
    """A module's docstring up to its first full stop, colon or semicolon outside brackets and
    backticks (the PEP 257 summary), past a leading title of three words or fewer; a package
    speaks through its __init__.py."""
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    line, depth, quoted = " ".join(doc.strip().split("\n\n")[0].split()), 0, False
    for i, char in enumerate(line):
        if char == "`":
            quoted = not quoted
        elif not quoted and char in "([":
            depth += 1
        elif not quoted and char in ")]":
            depth -= 1
        elif not quoted and depth == 0 and char in ".:;" and line[i + 1 : i + 2] in ("", " "):
            if char == ":" and len(line[:i].split()) <= 3 and i + 1 < len(line):
                continue  # a title ("Intake:", "`scale`:"): what follows says what it is
            return line[:i] if char != ":" or len(line[:i].split()) > 3 else line[i + 2 :]
    if line:
        return line.rstrip(",") + " …"  # the first line ends mid-sentence
    raise SystemExit(f"make docs: {path.relative_to(ROOT)} has no docstring to describe it")


def _entry(depth: int, name: str, text: str) -> str:
    head = "  " * depth + name
    return f"{head:<{COLUMN - 1}} {text}" if len(head) < COLUMN - 1 else f"{head}  {text}"


def _room_order(folder: Path) -> list[Path]:
    """Modules first, then subfolders; pipeline/'s rooms in the order of its layers."""
    from pipeline import LAYERS

    order = {room: i for i, rooms in enumerate(LAYERS) for room in rooms} if folder.name == "pipeline" else {}
    children = [p for p in folder.iterdir() if p.name not in ("__pycache__", "__init__.py")]
    children = [p for p in children if p.suffix == ".py" or (p.is_dir() and _listed(p))]
    return sorted(children, key=lambda p: (p.is_dir(), order.get(p.stem, len(order)), p.name))


def _listed(folder: Path) -> bool:
    return (folder / "__init__.py").is_file() or str(folder.relative_to(ROOT)) in FOLDERS


def _tree(path: Path, depth: int) -> list[str]:
    where = str(path.relative_to(ROOT))
    if path.is_file():
        return [_entry(depth, path.name, summary(path))]
    init = path / "__init__.py"
    lines = [_entry(depth, path.name + "/", FOLDERS.get(where) or summary(init))]
    if where.split("/")[0] in CODE:
        for child in _room_order(path):
            lines += _tree(child, depth + 1)
    else:
        for child in sorted(path.iterdir()):
            if str(child.relative_to(ROOT)) in FOLDERS:
                lines += _tree(child, depth + 1)
    return lines


def layout_tree() -> str:
    """Every package and module of the project with its docstring's summary, and the folders of
    FOLDERS, as an indented tree."""
    lines = [line for top in TOP for line in _tree(ROOT / top, 0)]
    return "```text\n" + "\n".join(lines) + "\n```"


TABLES: dict[str, Callable[[], str]] = {
    "settings": settings_table,
    "retries": retries_table,
    "data-extensions": data_extensions_table,
    "metrics": metrics_table,
    "performance": performance_table,
    "layout": layout_tree,
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
