"""Origin patterns: what they match, and how a CSP frame-ancestors source says them."""

import pytest

from pipeline.web.origins import frame_ancestor_source, origin_allowed

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
