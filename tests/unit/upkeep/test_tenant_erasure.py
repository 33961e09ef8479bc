"""`rokt-sfmc tenants erase`: a brand that leaves takes everything of its own with it (every key
under its prefix, its day figures included; its history-store rows; its registry record), and
nothing of another tenant's; only once disabled; and a second run after a stop finishes it."""

import pytest

from pipeline.infra import keys
from pipeline.settings import load_settings
from pipeline.stores.history import executions, row_of
from pipeline.tenancy.handles import Runtime
from pipeline.upkeep.tenant_erasure import TenantNotDisabled, erase_tenant
from pipeline.vocabulary import State, TenantStatus
from tests.unit.conftest import COMPLETE, ENV
from tests.unit.conftest import SEALING_KEY as KEY


@pytest.fixture
def rt(fake_redis):
    runtime = Runtime(load_settings({**ENV, "SECRET_KEY": KEY, "TENANT_REFRESH_SECONDS": "0"}), fake_redis)
    for name in ("leaving", "staying"):
        runtime.registry.add(name, {**COMPLETE, "sfmc_eid": f"eid{name}"})
        runtime.ledger.claim(name, "e1", {"activityId": "act-1", "eventId": f"ev-{name}", "args": {}})
        runtime.ledger.transition(name, "e1", State.ACCEPTED)
        record = runtime.redis.hgetall(keys.execution(name, "e1"))
        runtime.history.upsert_executions([row_of(name, "e1", record)])
    return runtime


def _history_rows(rt, tenant):
    with rt.history.engine.begin() as connection:
        return connection.execute(executions.select().where(executions.c.tenant == tenant)).fetchall()


def test_a_disabled_tenant_is_erased_whole_and_the_other_is_untouched(rt, fake_redis):
    with pytest.raises(TenantNotDisabled):
        erase_tenant(rt, "leaving")
    assert fake_redis.exists(keys.execution("leaving", "e1"))  # refused: nothing went
    before = sorted(fake_redis.scan_iter(match="rsf:staying:*"))
    assert any(":perf:" in key for key in fake_redis.scan_iter(match="rsf:leaving:*"))
    rt.registry.set_status("leaving", TenantStatus.DISABLED)

    done = erase_tenant(rt, "leaving")
    assert done["redisKeys"] > 3 and done["historyRows"]["executions"] == 1 and done["registry"] is True
    assert list(fake_redis.scan_iter(match="rsf:leaving:*")) == []
    assert sorted(fake_redis.scan_iter(match="rsf:staying:*")) == before
    assert _history_rows(rt, "leaving") == [] and len(_history_rows(rt, "staying")) == 1
    assert rt.registry.get("leaving") is None and rt.registry.by_eid("eidleaving") is None
    assert rt.registry.get("staying") is not None and rt.registry.by_eid("eidstaying").name == "staying"


def test_an_erasure_stopped_before_the_registry_finishes_when_run_again(rt, fake_redis):
    rt.registry.set_status("leaving", TenantStatus.DISABLED)
    rt.registry.remove("leaving")  # as if a first run got this far, then keys came back
    fake_redis.set(keys.tenant_key("leaving", "late"), "1")
    done = erase_tenant(rt, "leaving")
    assert done["redisKeys"] >= 2 and done["registry"] is False
    assert list(fake_redis.scan_iter(match="rsf:leaving:*")) == []
