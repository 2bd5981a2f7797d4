"""Gaps a user would notice, closed on 2026-12-07 (real Presidio, shipped policy): a BIC
read as a name, an unknown speaker's line opening with a digit, NHS and Medicare numbers
typed as phones, an IBAN spaced after its country code, a value written before its cue,
and a matrix product in code read as an e-mail address."""

from __future__ import annotations

import pytest
from conftest import make_prompt

from appliance.redact import Redactor


def redacted(redactor: Redactor, text: str) -> str:
    return redactor.redact(make_prompt(text)).text


@pytest.mark.parametrize(("text", "value", "expected"), [
    # "BIC" was a speaker (<PERSON>) and spaCy took the code for a name: "<PERSON>: <PERSON>"
    ("BIC: DEUTDEFF", "DEUTDEFF", "BIC: <BANK_ACCOUNT>"),
    ("Please wire it, BIC: DEUTDEFF and IBAN DE89370400440532013000", "DEUTDEFF",
     "BIC: <BANK_ACCOUNT> and IBAN <IBAN_CODE>"),
    # in the clear before
    ("SWIFT code DEUTDEFF500", "DEUTDEFF500", "SWIFT code <BANK_ACCOUNT>"),
    ("The SWIFT/BIC is NWBKGB2L, thanks", "NWBKGB2L", "The SWIFT/BIC is <BANK_ACCOUNT>, thanks"),
    ("My bank's swift code: BOFAUS3N", "BOFAUS3N", "swift code: <BANK_ACCOUNT>"),
])
def test_a_bic_is_redacted_as_the_banks_details_and_its_label_kept(
        redactor: Redactor, text: str, value: str, expected: str) -> None:
    out = redacted(redactor, text)
    assert value not in out
    assert expected in out
    assert "<PERSON>" not in out


@pytest.mark.parametrize("text", [
    "Is Swift code PORTABLE to Linux?",
    "I need a swift response from the BANK",
    "The BIC field is empty on the form",
])
def test_swift_and_bic_without_a_code_leave_the_prompt_alone(
        redactor: Redactor, text: str) -> None:
    assert redacted(redactor, text) == text


@pytest.mark.parametrize(("form", "kept"), [
    ("Dept: Sales\nIBAN: DE 89 3704 0044 0532 0130 00", "Dept: Sales\nIBAN: <IBAN_CODE>"),
    ("Ref: ABCD\nBIC: COBADEFF", "Ref: ABCD\nBIC: <BANK_ACCOUNT>"),
])
def test_a_fields_label_before_a_value_without_digits_is_no_speaker(
        redactor: Redactor, form: str, kept: str) -> None:
    """"Dept" and "IBAN" (before "DE 89 ...", whose first word holds no digit) were speaker
    labels: `<PERSON>: Sales`, `<PERSON>: DE 89 ...`."""
    assert redacted(redactor, form) == kept


@pytest.mark.parametrize(("text", "name"), [
    ("Oyelaran: 5 minutes late, sorry", "Oyelaran"),
    ("Hi all\nOyelaran: 3 of us are coming\nKemi: no worries", "Oyelaran"),
])
def test_an_unknown_speakers_line_opening_with_a_digit_is_still_a_speakers(
        redactor: Redactor, text: str, name: str) -> None:
    """A speaker label before a value holding a digit was taken for a field's ("DOB:
    02/01/1980"), so a name no list or spaCy knows stayed in the clear when its line
    opened with a number; speech goes on in lower-case words after it."""
    out = redacted(redactor, text)
    assert name not in out
    assert out.startswith("<PERSON>") or "\n<PERSON>: 3 of us" in out


@pytest.mark.parametrize(("text", "value"), [
    ("NHS number 943 476 5919", "943 476 5919"),
    ("my NHS number is 9434765919, can the GP see it?", "9434765919"),
    ("NHS no: 943-476-5919", "943-476-5919"),
    ("my Medicare number is 2123 45670 1", "2123 45670 1"),
    ("Medicare card: 2123456701", "2123456701"),
    ("Medicare number 1EG4-TE5-MK73 for my mother", "1EG4-TE5-MK73"),
])
def test_nhs_and_medicare_numbers_are_national_ids_not_phone_numbers(
        redactor: Redactor, text: str, value: str) -> None:
    """The phone rule typed the first four PHONE_NUMBER (for "number" or the 3-3-4
    grouping) and missed the others: a compliance officer read a phone number."""
    out = redacted(redactor, text)
    assert value not in out
    assert "<NATIONAL_ID>" in out
    assert "<PHONE_NUMBER>" not in out


@pytest.mark.parametrize("text", ["Is NHS 111 online any good?", "The NHS 2024-25 budget"])
def test_nhs_without_a_number_of_a_person_stays(redactor: Redactor, text: str) -> None:
    assert "<NATIONAL_ID>" not in redacted(redactor, text)


@pytest.mark.parametrize("text", [
    "GB 29 NWBK 6016 1331 9268 19",
    "pay to DE 89 3704 0044 0532 0130 00 today",
    "IBAN: DE 89 3704 0044 0532 0130 00",
    "wire to GB-29-NWBK-6016-1331-9268-19 please",
])
def test_an_iban_spaced_after_its_country_code_is_redacted_whole(
        redactor: Redactor, text: str) -> None:
    """Before: in the clear, "GB" alone a place (`<LOCATION> 29 NWBK ...`), "IBAN" a
    speaker."""
    out = redacted(redactor, text)
    assert "<IBAN_CODE>" in out
    for piece in ("NWBK", "3704", "0130", "9268", " 29 ", " 89 "):
        assert piece not in out
    assert "<PERSON>" not in out and "<LOCATION>" not in out


@pytest.mark.parametrize(("text", "value", "entity"), [
    ("12 March is my birthday", "12 March", "DATE_OF_BIRTH"),
    ("March 12 is my birthday, plan something", "March 12", "DATE_OF_BIRTH"),
    ("March 3rd, 1985 was my date of birth", "March 3rd, 1985", "DATE_OF_BIRTH"),
    ("4821 is my PIN", "4821", "SECRET"),
    ("hunter2 is my password", "hunter2", "SECRET"),
    ("'swordfish' was the passcode", "swordfish", "SECRET"),
    ("85731890 is my account number", "85731890", "BANK_ACCOUNT"),
    ("021000021 is the routing number", "021000021", "BANK_ACCOUNT"),
])
def test_a_value_written_before_its_cue_is_redacted(
        redactor: Redactor, text: str, value: str, entity: str) -> None:
    out = redacted(redactor, text)
    assert value not in out
    assert f"<{entity}>" in out
    assert text[text.index(value) + len(value):].split()[-1].strip(",.") in out


@pytest.mark.parametrize("text", [
    "1Password is my password manager",
    "123456 is the most common password",
    "What is my password?",
    "12 March is my birthday party, can you plan it",
    "100000 is my account balance",
    "Windows11 is my password vault",
])
def test_look_alikes_before_a_cue_stay(redactor: Redactor, text: str) -> None:
    assert redacted(redactor, text) == text


@pytest.mark.parametrize("text", [
    "out = x@self.weight + b",
    "x@self.weight + b",
    "return x@W.weight + b",
    "y = x@W.weight + b",
])
def test_a_matrix_product_in_code_is_no_email_address(redactor: Redactor, text: str) -> None:
    """Python's `@` between a variable and an attribute read as `<EMAIL_ADDRESS> + b`."""
    assert redacted(redactor, text) == text


@pytest.mark.parametrize(("text", "kept"), [
    ("mail bob@self.local", "mail <EMAIL_ADDRESS>"),
    ("mail bob@self.local - he knows", "mail <EMAIL_ADDRESS> - he knows"),
    ("contact jane.roe@corp.local - the admin", "contact <EMAIL_ADDRESS> - the admin"),
    ("Email=jane@corp.local", "Email=<EMAIL_ADDRESS>"),
])
def test_mail_under_a_private_domain_is_still_redacted(
        redactor: Redactor, text: str, kept: str) -> None:
    assert redacted(redactor, text) == kept
