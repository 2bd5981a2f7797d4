"""An identifier whose cue is followed by what it belongs to before "is": "the routing
number for my bank is ...", "my passport number on the form is ...", "my date of birth on
file is ...". The cue patterns took a value only right after the cue (and "is", ":"):
these were stored in the clear, or typed PHONE_NUMBER for their digits. Now one to four
words opened by for, on, in, with, at, of or from, then is/was, may stand between, and the
value is the cue's own type; without such a value the prompt is left alone. Real Presidio
and spaCy (policies/redaction.toml)."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import make_prompt


@pytest.mark.parametrize(("text", "value", "entity"), [
    ("the routing number for my bank is 021000021", "021000021", "BANK_ACCOUNT"),
    ("the account number for my savings is 12345678", "12345678", "BANK_ACCOUNT"),
    ("my account number with Chase is 000123456789", "000123456789", "BANK_ACCOUNT"),
    ("the sort code on my statement is 20-45-67", "20-45-67", "BANK_ACCOUNT"),
    ("my passport number on the form is X12345678", "X12345678", "PASSPORT"),
    ("my date of birth on file is 12/03/1985", "12/03/1985", "DATE_OF_BIRTH"),
    ("the birthday for my son is on 12 March", "12 March", "DATE_OF_BIRTH"),
    ("my NI number on the payslip is AB123456C", "AB123456C", "NATIONAL_ID"),
    ("my SIN for the form is 046 454 286", "046 454 286", "NATIONAL_ID"),
    ("my driver's licence number on the card is MORGA753116SM9IJ", "MORGA753116SM9IJ",
     "DRIVER_LICENSE"),
])
def test_a_value_named_after_a_phrase_is_redacted_as_its_cue_says(
        redactor: Any, text: str, value: str, entity: str) -> None:
    hits = [h for h in redactor.analyze(text) if text[h.start:h.end] == value]
    assert [h.entity_type for h in hits] == [entity], redactor.analyze(text)
    out = str(redactor.redact(make_prompt(text)).text)
    assert value not in out and text[:text.index(value)] in out  # the cue and phrase kept


@pytest.mark.parametrize("text", [
    "the account number for this test is not valid",
    "the routing number for each bank is on the cheque",
    "my passport number on the form is wrong",
    "the birthday for my son is in March",
    "my date of birth on the form is wrong",
    "the account number in the email is 12 digits long",
])
def test_a_phrase_after_a_cue_without_its_value_stays(redactor: Any, text: str) -> None:
    assert str(redactor.redact(make_prompt(text)).text) == text
