"""The docs: tables that mirror code are current (`make docs`), every doc is reachable from the
README, the layout names every module, and nothing cites a file outside the repository."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
LAYOUT = ROOT / "docs" / "layout.md"
CHECKED = ("pipeline", "tasks", "schemas", "bench")  # every module of these is in the layout
LINK = re.compile(r"\]\(([^)#\s]+\.md)(?:#[^)]*)?\)")


def test_every_generated_table_is_current():
    """scripts/docs.py --check renders each table from the code and compares: a stale one (a
    setting, retry rule, data-extension column, metric or bench figure changed without
    `make docs`) fails here."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "docs.py"), "--check"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "6 tables checked" in done.stdout


def test_a_stale_table_is_caught(tmp_path):
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import docs
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    stale = "<!-- make docs: settings -->\n| old |\n<!-- end make docs -->\n"
    fresh = docs.render(stale)
    assert fresh != stale and "`REDIS_URL`" in fresh and "| old |" not in fresh
    assert docs.render(fresh) == fresh


def test_the_readme_is_a_front_door_and_reaches_every_doc():
    text = README.read_text()
    assert len(text.splitlines()) <= 200
    reached, frontier = set(), [README]
    while frontier:
        page = frontier.pop()
        for target in LINK.findall(page.read_text()):
            path = (page.parent / target).resolve()
            assert path.exists(), f"{page.relative_to(ROOT)} links to {target}, which does not exist"
            if path not in reached and path.is_relative_to(ROOT):
                reached.add(path)
                frontier.append(path)
    docs = {p.resolve() for p in (ROOT / "docs").rglob("*.md")}
    assert not docs - reached, f"not reachable from the README: {sorted(docs - reached)}"


def test_no_comment_or_doc_names_a_file_outside_the_repository():
    """Vendor facts live in docs/vendors/; the team's research notes are not in the repository."""
    outside = re.compile(r"shared/reference|DESIGN\.md")
    offenders = []
    for path in ROOT.rglob("*"):
        if path.suffix not in (".py", ".md", ".js", ".html", ".cfg", ".toml", ".yml") or not path.is_file():
            continue
        if any(part.startswith(".") or part in ("node_modules", "__pycache__") for part in path.parts):
            continue
        if path == Path(__file__).resolve():
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if outside.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}")
    assert not offenders, offenders


def layout_paths() -> set[str]:
    """The paths the layout's tree names (two spaces of indent per level)."""
    block = LAYOUT.read_text().split("```text\n", 1)[1].split("```", 1)[0]
    paths, parents = set(), []
    for line in block.splitlines():
        if not line.strip():
            continue
        depth = (len(line) - len(line.lstrip(" "))) // 2
        name = line.split()[0]
        parents = parents[:depth]
        path = "/".join([*parents, name.rstrip("/")])
        paths.add(path)
        if name.endswith("/"):
            parents.append(name.rstrip("/"))
    return paths


def test_the_layout_names_every_module_and_nothing_that_is_gone():
    listed = layout_paths()
    for path in listed:
        assert (ROOT / path).exists(), f"docs/layout.md names {path}, which does not exist"
    modules = {
        str(path.relative_to(ROOT))
        for root in CHECKED
        for path in (ROOT / root).rglob("*.py")
        if path.name != "__init__.py" and "__pycache__" not in path.parts
    }
    modules.add("celeryconfig.py")
    missing = sorted(modules - listed)
    assert not missing, f"modules missing from docs/layout.md: {missing}"
