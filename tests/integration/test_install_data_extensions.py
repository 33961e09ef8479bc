"""Install data extensions through a real worker: the task, SOAP to the simulator, progress in Redis."""

from __future__ import annotations

import pytest
import requests

from pipeline.infra import dispatch
from pipeline.infra.redis_clients import redis_client
from pipeline.sandbox.stack import Stack
from pipeline.subscriptions import dataextensions as des

pytestmark = pytest.mark.integration
TENANT = "install"


def wait_until_done(stack: Stack, r) -> dict:
    def finished() -> bool:
        return des.install_progress(r, TENANT)["state"] in ("done", "failed")

    stack.wait(finished, 60, "install data extensions")
    return des.install_progress(r, TENANT)


def install(stack: Stack) -> dict:
    r = redis_client(stack.redis_url)
    assert des.mark_queued(r, TENANT)
    dispatch.install_data_extensions(TENANT)
    return wait_until_done(stack, r)


def test_the_task_installs_the_folder_and_both_data_extensions(stack: Stack):
    progress = install(stack)
    assert progress["state"] == "done", progress
    assert [s["result"] for s in progress["steps"]] == ["created"] * 4

    held = stack.sfmc_state()
    folder = next(f for f in held["folders"] if f["customer_key"] == des.FOLDER.customer_key)
    tenant = stack.tenant(TENANT)
    for de in des.DATA_EXTENSIONS:
        definition = held["data_extension_definitions"][de.key_of(tenant)]
        assert definition["category_id"] == folder["id"]
        assert [(f["name"], f["type"], f["is_primary_key"]) for f in definition["fields"]] == [
            (c.name, c.type, c.primary_key) for c in de.columns
        ]
        assert [f["max_length"] for f in definition["fields"] if f["type"] == "Text"] == [
            c.length for c in de.columns if c.type == "Text"
        ]
    subscription = held["data_extension_definitions"][tenant.sfmc_subscription_de_key]
    assert subscription["sendable_field"] == "SubscriberExternalId"
    assert subscription["sendable_subscriber_field"] == "_SubscriberKey"

    again = install(stack)
    assert [s["result"] for s in again["steps"]] == ["exists"] * 4


def test_throttled_soap_calls_are_retried_until_the_install_is_done(stack: Stack):
    requests.post(
        f"{stack.sfmc_url}/__sandbox__/soap-faults", json={"throttle_next": 2}, timeout=5
    ).raise_for_status()
    progress = install(stack)
    assert progress["state"] == "done", progress
    held = stack.sfmc_state()
    assert held["throttled"] >= 2
    assert stack.tenant(TENANT).sfmc_status_de_key in held["data_extension_definitions"]
