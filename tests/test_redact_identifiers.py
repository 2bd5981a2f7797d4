"""Account numbers, passport numbers and dates of birth: redacted when the text says what
they are (policy `custom` patterns, real Presidio), left alone when it does not."""

from __future__ import annotations

import pytest
from conftest import make_prompt

from appliance.redact import Redactor


def redacted(redactor: Redactor, text: str) -> str:
    return redactor.redact(make_prompt(text)).text


@pytest.mark.parametrize(("text", "value", "entity"), [
    ("My acct is 85731890 and PIN 3941", "85731890", "BANK_ACCOUNT"),
    ("Alright, here is the info: account: 85731890, thanks", "85731890", "BANK_ACCOUNT"),
    ("my account number is 000123456789", "000123456789", "BANK_ACCOUNT"),
    ("Pay into checking account #1234-5678-90 today", "1234-5678-90", "BANK_ACCOUNT"),
    ("My passport no. X12345678 expires soon", "X12345678", "PASSPORT"),
    ("passport number: 123456789, issued in 2019", "123456789", "PASSPORT"),
    ("DOB 02/01/1980, please update my record", "02/01/1980", "DATE_OF_BIRTH"),
    ("I was born on 3 March 1985 in a small town", "3 March 1985", "DATE_OF_BIRTH"),
    ("date of birth: 1980-01-02", "1980-01-02", "DATE_OF_BIRTH"),
    ("She was born March 3rd, 1985.", "March 3rd, 1985", "DATE_OF_BIRTH"),
    # a colon after "is", as a form is copied into a sentence
    ("My account number is: 000123456789", "000123456789", "BANK_ACCOUNT"),
    ("passport number is: X1234567", "X1234567", "PASSPORT"),
    ("Date of birth is: 02/01/1980", "02/01/1980", "DATE_OF_BIRTH"),
])
def test_an_identifier_the_text_names_is_redacted_and_its_cue_kept(
        redactor: Redactor, text: str, value: str, entity: str) -> None:
    out = redacted(redactor, text)
    assert value not in out
    assert f"<{entity}>" in out
    # the cue word stays, so the prompt still reads as what it is about
    cue = text[:text.index(value)].split()[-1]
    assert cue in out


@pytest.mark.parametrize("text", [
    "Book a table for 3 March at 7pm for four people",
    "My flight BA2490 on 02/01/2027 leaves at 10:30",
    "I have account 2 of 3 set up, and the account has 12 users",
    "My passport expires 2030, do I need to renew it before the passport 2024 rules?",
    "I was born in London and moved in 1985",
    "My order number is 536228467, where is it?",
    "When was Obama born?",
])
def test_look_alikes_are_no_account_passport_or_birth_date(
        redactor: Redactor, text: str) -> None:
    out = redacted(redactor, text)
    for entity in ("BANK_ACCOUNT", "PASSPORT", "DATE_OF_BIRTH"):
        assert f"<{entity}>" not in out
    # the dates, flight and order numbers stay for linking (no other type takes them)
    for kept in ("3 March", "02/01/2027", "BA2490", "1985", "2030", "536228467"):
        assert (kept in out) == (kept in text)
