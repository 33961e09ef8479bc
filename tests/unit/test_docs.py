"""The README's settings table is the settings module's table, row for row."""

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
