"""The data-extension schema table and the install, against the real SOAP simulator on loopback."""

from __future__ import annotations

import copy
import json
import os
import uuid
from collections.abc import Iterator

import pytest
import requests

from pipeline.clients.errors import PermanentError, Throttled
from pipeline.clients.soap import SimpleFilter, SoapObject
from pipeline.delivery.performance_rows import rows_of_day
from pipeline.infra import keys
from pipeline.journeys.executions import status_row
from pipeline.sandbox import sfmc
from pipeline.sandbox.common import ServerThread
from pipeline.settings import load_settings
from pipeline.stores.ledger import Execution
from pipeline.subscriptions import dataextensions as des
from pipeline.subscriptions.subscription_rows import attributes, merge, row_from_state
from pipeline.tenancy.handles import Runtime
from schemas.rokt_webhook import load_subscription
from tests.unit.conftest import ENV
from tests.unit.samples import SUBSCRIBE

TENANT = "default"


def written_columns(row: dict) -> set[str]:
    return set(row["keys"]) | set(row["values"])


def subscription_rows() -> list[dict]:
    """Rows as the webhooks write them: every attribute a Subscribe carries, then an Unsubscribe."""
    details = copy.deepcopy(SUBSCRIBE["eventDetails"])
    details["subscription"]["removedDateTimeUtc"] = "2026-05-06 01:18:49.755190"
    attrs = attributes(SUBSCRIBE["eventId"], details, load_subscription(details))
    return [row_from_state(merge({}, attrs, 1), "matched")]


def status_rows() -> list[dict]:
    fields = {
        "status": "accepted",
        "eventId": "rsf-1",
        "contactKey": "C1",
        "args": '{"templateId": "t1"}',
        "error": "",
        "journeyId": "j",
        "activityId": "a",
        "createdAt": "2026-01-01T00:00:00.000+00:00",
        "updatedAt": "2026-01-01T00:00:01.000+00:00",
    }
    ex = Execution.from_hash(TENANT, "ex-1", fields)
    return [status_row(ex)]


def performance_rows() -> list[dict]:
    """A day's rows as beat writes them: the tenant's own and one activity's."""
    raw = {"*|entered": "2", "*|subscribed": "1", "a:act-1|entered": "2", "j:act-1": "journey-1"}
    names = {"act-1": {"journey": "Welcome", "activity": "Save the date"}}
    return rows_of_day("2026-12-08", raw, "UTC", names, {"act-1": "journey-1"}, "2026-12-08T10:00:00Z")


def test_every_column_our_code_writes_is_in_the_table():
    rows = {"subscription": subscription_rows(), "status": status_rows(), "performance": performance_rows()}
    assert sorted(de.role for de in des.DATA_EXTENSIONS) == sorted(rows)  # each table checked once
    for de in des.DATA_EXTENSIONS:
        names = {c.name for c in de.columns}
        written = set().union(*(written_columns(row) for row in rows[de.role]))
        assert written, de.role
        assert written <= names, f"{de.name} lacks {sorted(written - names)}"


def test_the_subscription_de_has_the_guides_26_attributes():
    from pipeline.subscriptions.subscription_rows import DE_COLUMNS

    names = [c.name for c in des.SUBSCRIPTION_DE.columns]
    assert len(DE_COLUMNS) == 26 and set(DE_COLUMNS) <= set(names)


def test_the_schema_follows_sfmcs_rules():
    assert des.FOLDER.customer_key and len(des.FOLDER.customer_key) <= des.MAX_EXTERNAL_KEY
    assert des.DATA_EXTENSIONS == (des.SUBSCRIPTION_DE, des.STATUS_DE, des.PERFORMANCE_DE)
    for de in des.DATA_EXTENSIONS:
        names = [c.name.lower() for c in de.columns]
        assert len(names) == len(set(names)), de.name
        for column in de.columns:
            assert column.type in des.FIELD_TYPES, column
            if column.type == "Text":
                assert column.length and 0 < column.length <= des.MAX_TEXT_LENGTH, column
            if column.primary_key:
                assert column.required and column.type != "Date", column
        if de.sendable_field:
            assert de.column(de.sendable_field).type == "Text"
    assert [c.name for c in des.SUBSCRIPTION_DE.columns if c.primary_key] == ["CalendarSubscriptionId"]
    assert [c.name for c in des.STATUS_DE.columns if c.primary_key] == ["ContactKey", "ExecutionId"]
    assert [c.name for c in des.PERFORMANCE_DE.columns if c.primary_key] == ["Date", "ActivityId"]
    assert des.SUBSCRIPTION_DE.sendable_field == "SubscriberExternalId"


def test_the_markdown_table_lists_every_column_with_its_type():
    text = des.markdown_table()
    assert "the tenant's `sfmc_performance_de_key`" in text
    for de in des.DATA_EXTENSIONS:
        assert f"**{de.name}**" in text
        for column in de.columns:
            assert f"| `{column.name}` | {column.type} |" in text


# --- install against the simulator ----------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[sfmc.SfmcSimulator, str]]:
    sim = sfmc.SfmcSimulator()
    thread = ServerThread(sim.app).start()
    try:
        yield sim, thread.url
    finally:
        thread.stop()


@pytest.fixture
def simulator(server) -> tuple[sfmc.SfmcSimulator, str]:
    """The module's simulator, emptied (tokens, SOAP objects, faults) for each test."""
    requests.post(f"{server[1]}/__sandbox__/reset", timeout=5).raise_for_status()
    return server


@pytest.fixture
def rt(simulator, fake_redis) -> Runtime:
    _sim, url = simulator
    env = {
        **ENV,
        "SFMC_AUTH_BASE_URL": url,
        "SANDBOX": "1",  # the simulator is plain http
        "SFMC_CLIENT_ID": sfmc.DEFAULT_CLIENT_ID,
        "SFMC_CLIENT_SECRET": sfmc.DEFAULT_CLIENT_SECRET,
    }
    return Runtime(load_settings(env), fake_redis)


def state(simulator) -> dict:
    _sim, url = simulator
    return requests.get(f"{url}/__sandbox__/state", timeout=5).json()


def test_a_first_install_creates_the_folder_and_both_data_extensions_typed(rt, simulator):
    """Folder under the root, both DEs in it, every field of the table with its type and flags."""
    assert des.install_progress(rt.redis, TENANT)["state"] == "never"
    assert des.mark_queued(rt.redis, TENANT)
    progress = des.install(rt, TENANT)
    assert progress["state"] == "done" and des.installed(rt.redis, TENANT)
    assert [s["result"] for s in progress["steps"]] == ["created"] * 4

    held = state(simulator)
    folder = next(f for f in held["folders"] if f["customer_key"] == des.FOLDER.customer_key)
    root = next(f for f in held["folders"] if f["parent_id"] == 0)
    assert folder["name"] == "Rokt Calendar" and folder["parent_id"] == root["id"]
    tenant = rt.tenant(TENANT)
    for de in des.DATA_EXTENSIONS:
        definition = held["data_extension_definitions"][de.key_of(tenant)]
        assert definition["name"] == de.name and definition["category_id"] == folder["id"]
        fields = {f["name"]: f for f in definition["fields"]}
        assert list(fields) == [c.name for c in de.columns]
        for column in de.columns:
            field = fields[column.name]
            assert field["type"] == column.type
            assert field["is_primary_key"] == column.primary_key
            assert field["is_required"] == column.required
            if column.type == "Text":
                assert field["max_length"] == column.length
    subscription = held["data_extension_definitions"][tenant.sfmc_subscription_de_key]
    assert subscription["is_sendable"] and subscription["sendable_field"] == "SubscriberExternalId"
    assert subscription["sendable_subscriber_field"] == "_SubscriberKey"
    assert not held["data_extension_definitions"][tenant.sfmc_status_de_key]["is_sendable"]


def test_a_second_install_finds_everything(rt, simulator):
    des.install(rt, TENANT)
    creates = state(simulator)["soap_calls"].get("Create", 0)
    progress = des.install(rt, TENANT)
    assert [s["result"] for s in progress["steps"]] == ["exists"] * 4
    held = state(simulator)
    assert held["soap_calls"].get("Create", 0) == creates and "Update" not in held["soap_calls"]
    assert len([f for f in held["folders"] if f["customer_key"] == des.FOLDER.customer_key]) == 1


def test_an_existing_de_gets_only_its_missing_columns_and_keeps_its_own(rt, simulator):
    client = des.soap_client(rt, TENANT)
    key = rt.tenant(TENANT).sfmc_status_de_key
    own = [
        {
            "Name": "ContactKey",
            "MaxLength": 254,
            "IsRequired": True,
            "IsPrimaryKey": True,
            "FieldType": "Text",
        },
        {
            "Name": "ExecutionId",
            "MaxLength": 100,
            "IsRequired": True,
            "IsPrimaryKey": True,
            "FieldType": "Text",
        },
        {"Name": "status", "MaxLength": 10, "FieldType": "Text"},  # ours, other case, shorter: kept
        {"Name": "BrandNote", "MaxLength": 50, "FieldType": "Text"},
    ]
    client.create(
        [SoapObject("DataExtension", {"CustomerKey": key, "Name": "Made by hand", "Fields": {"Field": own}})]
    )
    progress = des.install(rt, TENANT)
    step = next(s for s in progress["steps"] if key in s["name"])
    assert step["result"] == "updated"
    assert (
        "Error" in step["detail"] and "ContactKey" not in step["detail"] and "BrandNote" not in step["detail"]
    )
    fields = {f["name"]: f for f in state(simulator)["data_extension_definitions"][key]["fields"]}
    assert fields["BrandNote"]["max_length"] == 50 and fields["status"]["max_length"] == 10
    assert "Status" not in fields  # the same column in SFMC (names are case-insensitive)
    expected = {c.name.lower() for c in des.STATUS_DE.columns} | {"brandnote"}
    assert {name.lower() for name in fields} == expected
    assert des.install(rt, TENANT)["steps"][2]["result"] == "exists"


def test_an_error_result_ends_failed_with_the_reason(rt, simulator):
    client = des.soap_client(rt, TENANT)
    # a DE of our key without our primary key column, which cannot be added
    key = rt.tenant(TENANT).sfmc_subscription_de_key
    field = {"Name": "Other", "MaxLength": 10, "IsRequired": True, "IsPrimaryKey": True, "FieldType": "Text"}
    client.create(
        [SoapObject("DataExtension", {"CustomerKey": key, "Name": "Old", "Fields": {"Field": [field]}})]
    )
    with pytest.raises(PermanentError):
        des.install(rt, TENANT)
    progress = des.install_progress(rt.redis, TENANT)
    assert progress["state"] == "failed" and "CalendarSubscriptionId" in progress["error"]
    assert progress["steps"][-1]["result"] == "failed"
    assert not des.installed(rt.redis, TENANT)


def test_an_error_result_from_sfmc_is_reported_with_its_status_message(rt, simulator, monkeypatch):
    bad = des.Column("When", "Date", primary_key=True, required=True)
    broken = des.DataExtension(
        role="status",
        name="Broken",
        description="",
        key_of=lambda tenant: tenant.sfmc_status_de_key,
        columns=(bad,),
    )
    monkeypatch.setattr(des, "DATA_EXTENSIONS", (broken,))
    with pytest.raises(PermanentError, match="Date field cannot be a primary key"):
        des.install(rt, TENANT)
    progress = des.install_progress(rt.redis, TENANT)
    assert progress["state"] == "failed" and "Date field cannot be a primary key" in progress["error"]


def test_throttling_leaves_the_run_going_and_pauses_the_sfmc_limiter(rt, simulator):
    _sim, url = simulator
    requests.post(f"{url}/__sandbox__/soap-faults", json={"throttle_next": 1}, timeout=5).raise_for_status()
    with pytest.raises(Throttled):
        des.install(rt, TENANT)
    progress = des.install_progress(rt.redis, TENANT)
    assert progress["state"] == "running" and "throttled" in progress["error"]
    assert rt.limiter(TENANT, "sfmc").try_acquire() > 0  # paused for the account
    rt.redis.flushall()  # the pause is over (fakeredis keeps no clock of its own)
    assert des.install(rt, TENANT)["state"] == "done"


def test_mark_queued_refuses_a_second_run_while_one_is_young(rt, fake_redis):
    assert des.mark_queued(fake_redis, TENANT)
    assert not des.mark_queued(fake_redis, TENANT)
    progress = des.install_progress(fake_redis, TENANT)
    progress["updatedAt"] -= des.QUEUED_STALE_SECONDS + 1
    fake_redis.set(keys.install_progress(TENANT), json.dumps(progress))
    assert des.mark_queued(fake_redis, TENANT)


def test_a_key_longer_than_sfmc_allows_fails_before_any_call(rt, simulator, monkeypatch):
    long_key = "k" * 37
    broken = des.DataExtension("status", "S", "", lambda tenant: long_key, des.STATUS_DE.columns)
    monkeypatch.setattr(des, "DATA_EXTENSIONS", (broken,))
    with pytest.raises(PermanentError, match="sfmc_status_de_key"):
        des.install(rt, TENANT)
    assert long_key not in state(simulator)["data_extension_definitions"]


def test_the_folder_made_by_hand_under_another_key_is_used(rt, simulator):
    client = des.soap_client(rt, TENANT)
    root = client.retrieve("DataFolder", ["ID"], SimpleFilter("CustomerKey", "dataextension_default"))[0]
    made = client.create(
        [
            SoapObject(
                "DataFolder",
                {
                    "CustomerKey": str(uuid.uuid4()),
                    "ParentFolder": {"ID": root["ID"]},
                    "Name": "Rokt Calendar",
                    "ContentType": "dataextension",
                },
            )
        ]
    )[0]
    progress = des.install(rt, TENANT)
    first = progress["steps"][0]
    assert first["result"] == "exists" and first["detail"] == f"folder id {made['NewID']}"


# --- the task --------------------------------------------------------------------------------


def run_task(retries: int = 0):
    """Run the install task as a worker does, for the `retries`-th time."""
    from tasks.provisioning import install_data_extensions_task

    task = install_data_extensions_task
    task.push_request(id="install-test", args=[TENANT], kwargs={}, retries=retries, called_directly=False)
    try:
        return task.run(TENANT)
    finally:
        task.pop_request()


@pytest.fixture
def worker(rt, monkeypatch):
    from pipeline.tenancy import handles as runtime_module

    monkeypatch.setattr(runtime_module, "_runtime", (os.getpid(), rt))
    return rt


def test_the_task_retries_throttling_then_gives_up_failed_after_its_bound(worker, simulator, sent_tasks):
    from celery.exceptions import Retry

    from tasks.provisioning import MAX_INSTALL_RETRIES

    _sim, url = simulator
    requests.post(f"{url}/__sandbox__/soap-faults", json={"throttle_next": 2}, timeout=5).raise_for_status()
    with pytest.raises(Retry):
        run_task()
    assert sent_tasks[-1].name == "rsf.install_data_extensions" and sent_tasks[-1].args == [TENANT]
    worker.redis.delete(worker.limiter(TENANT, "sfmc").cooldown_key)  # the pause is over
    progress = run_task(retries=MAX_INSTALL_RETRIES)  # the last try: throttled again, so it ends
    assert progress["state"] == "failed" and "throttled" in progress["error"]
    worker.redis.delete(worker.limiter(TENANT, "sfmc").cooldown_key)
    assert run_task()["state"] == "done"


def test_the_task_ends_failed_at_once_on_a_permanent_error(worker, simulator, sent_tasks, monkeypatch):
    bad = des.DataExtension(
        "status", "Broken", "", lambda t: t.sfmc_status_de_key, (des.Column("D", "Blob"),)
    )
    monkeypatch.setattr(des, "DATA_EXTENSIONS", (bad,))
    progress = run_task()
    assert progress["state"] == "failed" and "unknown FieldType" in progress["error"]
    assert not [s for s in sent_tasks if s.name == "rsf.install_data_extensions"]


def test_missing_at_sfmc_names_what_an_install_would_add_and_changes_nothing(rt, simulator):
    tenant = rt.tenant(TENANT)
    assert des.missing_at_sfmc(rt, TENANT) == [
        "folder Rokt Calendar",
        f"data extension {tenant.sfmc_subscription_de_key}",
        f"data extension {tenant.sfmc_status_de_key}",
        f"data extension {tenant.sfmc_performance_de_key}",
    ]
    assert state(simulator)["data_extension_definitions"] == {}
    des.install(rt, TENANT)
    assert des.missing_at_sfmc(rt, TENANT) == []


def test_an_install_made_before_the_performance_de_adds_it_and_touches_nothing_else(
    rt, simulator, monkeypatch
):
    """Tenants installed before the performance DE existed: Install again creates it alone."""
    with monkeypatch.context() as patch:
        patch.setattr(des, "DATA_EXTENSIONS", (des.SUBSCRIPTION_DE, des.STATUS_DE))
        des.install(rt, TENANT)
    creates = state(simulator)["soap_calls"].get("Create", 0)
    progress = des.install(rt, TENANT)
    assert [s["result"] for s in progress["steps"]] == ["exists", "exists", "exists", "created"]
    held = state(simulator)
    assert held["soap_calls"]["Create"] == creates + 1 and "Update" not in held["soap_calls"]
    definition = held["data_extension_definitions"][rt.tenant(TENANT).sfmc_performance_de_key]
    assert definition["name"] == "Rokt Calendar Performance"
    assert [f["name"] for f in definition["fields"] if f["is_primary_key"]] == ["Date", "ActivityId"]
    assert [s["result"] for s in des.install(rt, TENANT)["steps"]] == ["exists"] * 4
