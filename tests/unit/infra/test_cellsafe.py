"""Spreadsheet safety: free text neutralised, identities refused, plain numbers let through."""

import string

from hypothesis import given
from hypothesis import strategies as st

from pipeline.infra.cellsafe import FORMULA_STARTS, formula_problem, neutralise


@given(st.text(max_size=40))
def test_what_passes_either_starts_harmlessly_or_holds_no_letter(value):
    """A value let through either cannot start a formula, or is sign + digits and separators:
    no letter, so no function call (DDE, HYPERLINK, WEBSERVICE) can be written with it."""
    if formula_problem(value) is None and value.startswith(FORMULA_STARTS):
        assert value[0] in "+-"
        assert not any(ch in string.ascii_letters or ch in "=@!|\"'&:;$" for ch in value), value
        assert set(value[1:]) <= set(string.digits + " ().-")


@given(st.sampled_from(FORMULA_STARTS), st.text(max_size=20))
def test_a_formula_start_followed_by_a_letter_is_always_refused(start, rest):
    assert formula_problem(start + "A" + rest) is not None


def test_free_text_gets_a_quote_and_numbers_pass():
    assert neutralise("=1+1") == "'=1+1" and neutralise("Team A") == "Team A" and neutralise(3) == 3
    assert formula_problem("+14155550123") is None and formula_problem("C-1") is None
    assert formula_problem("+") is not None and formula_problem("-") is not None
