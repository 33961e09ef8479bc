"""The README's tables are the code's tables (settings, retries) and the committed bench results."""

from pathlib import Path

from pipeline.settings import SETTINGS_TABLE

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_setting_is_documented_in_the_readme():
    text = README.read_text()
    for name, meaning, default in SETTINGS_TABLE:
        expected = f"| `{name}` | {meaning} | {'`' + default + '`' if default else '—'} |"
        assert expected in text, name


def test_the_retry_table_is_in_the_readme():
    from pipeline.retry_policy import RETRY_TABLE

    text = README.read_text()
    for part, condition, error_class, action in RETRY_TABLE:
        assert f"| {part} | {condition} | {error_class} | {action} |" in text, condition


def test_the_performance_table_is_rendered_from_the_committed_results():
    import json

    from bench.markdown import RESULTS, readme_section

    assert readme_section(json.loads(RESULTS.read_text())) in README.read_text()


ROOT = README.parent
CHECKED = ("pipeline", "tasks", "schemas", "bench")  # every module of these is in the Layout


def layout_paths() -> set[str]:
    """The paths the README's Layout tree names (two spaces of indent per level)."""
    text = README.read_text()
    section = text.split("## Layout", 1)[1]
    block = section.split("```text\n", 1)[1].split("```", 1)[0]
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
        assert (ROOT / path).exists(), f"README Layout names {path}, which does not exist"
    modules = {
        str(path.relative_to(ROOT))
        for root in CHECKED
        for path in (ROOT / root).rglob("*.py")
        if path.name != "__init__.py" and "__pycache__" not in path.parts
    }
    modules.add("celeryconfig.py")
    missing = sorted(modules - listed)
    assert not missing, f"modules missing from the README Layout: {missing}"


def test_the_data_extension_table_is_in_the_readme():
    from pipeline.dataextensions import markdown_table

    assert markdown_table().strip() in README.read_text()
