"""Origin patterns: what they match, and how a CSP frame-ancestors source says them."""

import pytest

from pipeline.settings import Tenant, load_settings, stack_label
from pipeline.web.origins import (
    frame_ancestor_source,
    frame_ancestors,
    frame_origins,
    frame_sources,
    origin_allowed,
    page_policy,
)

JB = "https://jbinteractions.*.marketingcloudapps.com"


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("https://jbinteractions.s7.marketingcloudapps.com", True),
        ("https://jbinteractions.s10.marketingcloudapps.com", True),
        ("http://jbinteractions.s7.marketingcloudapps.com", False),  # scheme
        ("https://jbinteractions.marketingcloudapps.com", False),  # `*` is one or more characters
        ("https://jbinteractions.a.b.marketingcloudapps.com", False),  # one label only
        ("https://jbinteractions.s7.marketingcloudapps.com.evil.test", False),
        ("https://evil.test/https://jbinteractions.s7.marketingcloudapps.com", False),
        ("https://jbinteractionsXs7.marketingcloudapps.com", False),  # the dot is literal
        ("http://127.0.0.1:5173", True),
        ("http://127.0.0.1", False),
    ],
)
def test_an_origin_matches_a_pattern_label_for_label(origin, allowed):
    patterns = (JB, "http://127.0.0.1:*")
    assert origin_allowed(origin, patterns) is allowed


@pytest.mark.parametrize(
    ("pattern", "source"),
    [
        (JB, "https://*.marketingcloudapps.com"),
        ("http://127.0.0.1:*", "http://127.0.0.1:*"),
        ("https://*.test.example", "https://*.test.example"),
        ("https://a.b*.c.example:8443", "https://*.c.example:8443"),
        ("https://jb.example", "https://jb.example"),
    ],
)
def test_origin_patterns_become_csp_sources(pattern, source):
    assert frame_ancestor_source(pattern) == source


# -- a tenant's own stack ------------------------------------------------------------------------
DEFAULTS = load_settings({})
S4 = Tenant(name="acme", sfmc_stack="s4")


def test_a_known_stack_narrows_journey_builder_to_its_own_host():
    origins = frame_origins(DEFAULTS.jb_allowed_origins, S4)
    assert origins == ("https://jbinteractions.s4.marketingcloudapps.com",)
    assert origin_allowed("https://jbinteractions.s4.marketingcloudapps.com", origins)
    assert not origin_allowed("https://jbinteractions.s7.marketingcloudapps.com", origins)
    assert frame_ancestors(origins) == "frame-ancestors https://jbinteractions.s4.marketingcloudapps.com"


def test_a_known_stack_narrows_marketing_cloud_to_its_own_hosts():
    """`mc.s4.exacttarget.com` exactly; under marketingcloudapps.com every host of the stack (CSP
    allows `*` only as the leftmost label; which hosts of a stack frame the app is unconfirmed)."""
    origins = frame_origins(DEFAULTS.mc_allowed_origins, S4)
    assert frame_sources(origins) == ["https://mc.s4.exacttarget.com", "https://*.s4.marketingcloudapps.com"]
    assert not origin_allowed("https://mc.s7.exacttarget.com", origins)
    assert not origin_allowed("https://mc.s7.marketingcloudapps.com", origins)


@pytest.mark.parametrize("tenant", [None, Tenant(name="never-signed-in")])
def test_without_a_known_stack_any_stack_frames(tenant):
    """No tenant (the sign-in pages) or one whose stack no sign-in named yet: any stack's hosts,
    the widest the defaults allow, so that the first sign-in can happen at all."""
    assert page_policy(frame_origins(DEFAULTS.mc_allowed_origins, tenant)).endswith(
        "; frame-ancestors https://*.exacttarget.com https://*.marketingcloudapps.com"
    )
    assert frame_origins(DEFAULTS.jb_allowed_origins, tenant) == (JB,)


def test_a_tenants_frame_origins_replace_what_its_stack_gives():
    tenant = Tenant(
        name="acme", sfmc_stack="s4", frame_origins=" https://mc.s50.exacttarget.com, https://x.example.test"
    )
    for patterns in (DEFAULTS.jb_allowed_origins, DEFAULTS.mc_allowed_origins):
        assert frame_origins(patterns, tenant) == ("https://mc.s50.exacttarget.com", "https://x.example.test")


def test_an_override_may_say_stack_too_and_gets_the_tenants():
    """An admin who copies the documented default into frame_origins gets their stack's hosts, not
    a literal `{stack}` no browser origin matches."""
    tenant = Tenant(
        name="acme", sfmc_stack="s4", frame_origins="https://jbinteractions.{stack}.marketingcloudapps.com"
    )
    assert frame_origins(DEFAULTS.jb_allowed_origins, tenant) == (
        "https://jbinteractions.s4.marketingcloudapps.com",
    )


def test_patterns_without_the_placeholder_are_the_same_for_every_stack():
    """The sandbox's loopback host (`http://127.0.0.1:<port>`) frames every tenant's pages."""
    loopback = ("http://127.0.0.1:5173",)
    assert frame_origins(loopback, S4) == frame_origins(loopback, None) == loopback


@pytest.mark.parametrize(
    ("stack_key", "label"),
    [("S4", "s4"), (" S10 ", "s10"), ("s7", "s7"), ("", ""), ("s.4", ""), ("s4/x", ""), ("S" * 64, "")],
)
def test_a_stack_key_becomes_one_host_label_or_nothing(stack_key, label):
    assert stack_label(stack_key) == label
