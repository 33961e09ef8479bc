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
