"""Origin patterns as the web tier applies them: which origins match, and the pages' CSP.

The patterns are settings (`JB_ALLOWED_ORIGINS`, `MC_ALLOWED_ORIGINS`, parsed and checked by
`pipeline.settings.parse_origin_patterns`); what they allow is decided here. A tenant's pages are
framed only from its own stack: `{stack}` in a pattern becomes the stack its sign-in named
(`Tenant.sfmc_stack`), `*` while none is known; a tenant's `frame_origins` replaces both lists.
"""

from __future__ import annotations

import re

from pipeline.settings import STACK_PLACEHOLDER, Tenant, parse_origin_patterns


def for_stack(patterns: tuple[str, ...], stack: str) -> tuple[str, ...]:
    """`patterns` with `{stack}` as the stack's label, or `*` (any stack) without one."""
    return tuple(dict.fromkeys(pattern.replace(STACK_PLACEHOLDER, stack or "*") for pattern in patterns))


def frame_origins(patterns: tuple[str, ...], tenant: Tenant | None) -> tuple[str, ...]:
    """Who may frame a page of `tenant` (None: no tenant known, e.g. before sign-in): its
    `frame_origins` override, else `patterns` on its stack (any stack while none is known)."""
    if tenant is None:
        return for_stack(patterns, "")
    if tenant.frame_origins.strip():  # it may say `{stack}` too
        return for_stack(parse_origin_patterns(tenant.frame_origins), tenant.sfmc_stack)
    return for_stack(patterns, tenant.sfmc_stack)


def origin_pattern_regex(pattern: str) -> re.Pattern[str]:
    """The origins a pattern allows: `*` is one or more of [A-Za-z0-9-] (one label, or a port)."""
    return re.compile("^" + re.escape(pattern).replace(r"\*", "[A-Za-z0-9-]+") + "$")


def origin_allowed(origin: str, patterns: tuple[str, ...]) -> bool:
    return any(origin_pattern_regex(pattern).match(origin) for pattern in patterns)


def frame_ancestor_source(pattern: str) -> str:
    """An origin pattern as a CSP source expression, which allows `*` only as the leftmost
    label or as the port: `https://jbinteractions.*.marketingcloudapps.com` becomes
    `https://*.marketingcloudapps.com` (wider, the closest CSP can say; the UI's own origin
    check in the page is exact), `http://127.0.0.1:*` stays."""
    scheme, rest = pattern.split("://", 1)
    host, colon, port = rest.partition(":")
    labels = host.split(".")
    wild = [i for i, label in enumerate(labels) if "*" in label]
    if wild:
        host = ".".join(["*", *labels[wild[-1] + 1 :]])
    return f"{scheme}://{host}{colon}{'*' if '*' in port else port}"


def frame_sources(patterns: tuple[str, ...]) -> list[str]:
    """The CSP sources `patterns` become, once each, in order (what App Settings shows)."""
    return list(dict.fromkeys(frame_ancestor_source(pattern) for pattern in patterns))


def frame_ancestors(patterns: tuple[str, ...]) -> str:
    return "frame-ancestors " + " ".join(frame_sources(patterns))


# Our pages load only their own files: no inline script or style, no CDN, no plugin, no <base>.
PAGE_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'"
)


def page_policy(frame_patterns: tuple[str, ...]) -> str:
    """The Content-Security-Policy of every page we serve: PAGE_POLICY, framed by `frame_patterns` only."""
    return f"{PAGE_POLICY}; {frame_ancestors(frame_patterns)}"
