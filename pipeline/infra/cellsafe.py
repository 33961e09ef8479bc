"""Spreadsheet safety of every text cell we write to SFMC: free text neutralised, identities refused.

SFMC exports data extensions to spreadsheets (OWASP "CSV Injection"): a cell starting with
= + - @, TAB or CR (and LF, NUL and the full-width = + - @, to be safe) may run as a formula there.

Free text (a vendor's error, a UTM tag, a calendar title) is sent with a leading single quote,
OWASP's advice (`neutralise`). Identities (a contact key, an email, Rokt's ids) cannot be
rewritten: they must match byte for byte across SFMC, Rokt and our own records. So one that would
start like a formula is refused where it enters (`formula_problem`: execute's `keyValue`, the
webhook's ids, backfill records), with one exception: a plain number, such as a phone number
`+44 20 7946 0958` used as a contact key, which has no letter and so can call no function.
"""

from __future__ import annotations

import re
from typing import Any

from marshmallow import ValidationError

# ASCII, NUL (OWASP ASVS 5.0 V1.2.10), and the full-width forms an East Asian input method types,
# which some spreadsheets read as the ASCII ones
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n", "\0", "\uff1d", "\uff0b", "\uff0d", "\uff20")
# a sign, then digits with the separators a phone number uses: arithmetic at most, never a call
PLAIN_NUMBER = re.compile(r"[+-][0-9][0-9 ().-]*")
FORMULA_PROBLEM = (
    "must not start with = + - @, a tab or a line break (a spreadsheet reads it as a formula), "
    "unless it is a plain number"
)


def neutralise(value: Any) -> Any:
    """A text that a spreadsheet would read as a formula, prefixed with `'`; anything else as is."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def formula_problem(value: Any) -> str | None:
    """Why an identity value cannot be written to SFMC as it is, or None when it can."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS) and not PLAIN_NUMBER.fullmatch(value):
        return FORMULA_PROBLEM
    return None


def refuse_formula(value: Any) -> None:
    """A marshmallow validator for identity fields."""
    problem = formula_problem(value)
    if problem:
        raise ValidationError(problem)
