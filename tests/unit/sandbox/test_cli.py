"""The sandbox's commands reach `rokt-sfmc` through the entry-point group, not an import."""

import pytest

from pipeline import cli
from pipeline.sandbox import cli as sandbox_cli


@pytest.mark.parametrize(
    ("argv", "func"),
    [
        (["sandbox", "--rokt-port", "1", "--env-file", "x.env"], sandbox_cli.cmd_sandbox),
        (["jb-simulate", "--tenant", "t", "--contacts", "3"], sandbox_cli.cmd_jb_simulate),
        (["demo", "--contacts", "5", "--chaos", "kill-workers"], sandbox_cli.cmd_demo),
    ],
)
def test_the_sandbox_commands_are_registered_on_the_product_cli(argv, func):
    args = cli.build_parser().parse_args(argv)
    assert args.func is func


def test_a_bad_chaos_scenario_exits_2(capsys):
    assert cli.main(["demo", "--chaos", "meteor"]) == 2
    assert "unknown chaos scenario" in capsys.readouterr().err
