"""The browser tests' fixtures for the e2e tests that open pages: Debian's Chromium launched as they
launch it (every such test skipped where it is missing), a fresh page per test."""

from tests.browser.conftest import browser, chromium, page  # noqa: F401 - fixtures shared, not copied
