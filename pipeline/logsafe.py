"""Masking for log lines: contact keys and emails are personal data, secrets never print."""

from __future__ import annotations

import re

EMAIL = re.compile(r"([\w.+-]{1,64})@([\w-]+(?:\.[\w-]+)+)")


def mask_emails(text: str) -> str:
    """Mask every email address inside free text (vendor error messages quote them)."""
    return EMAIL.sub(lambda m: mask(m.group(0)), text)


def mask(value: object) -> str:
    """`jane.doe@example.com` -> `ja***@ex***`; `0031X00000abcDE` -> `00***DE`."""
    text = "" if value is None else str(value)
    if "@" in text:
        local, _, domain = text.partition("@")
        return f"{local[:2]}***@{domain[:2]}***"
    if len(text) <= 4:
        return "***"
    return f"{text[:2]}***{text[-2:]}"
