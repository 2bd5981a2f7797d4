"""Account numbers, sort codes and routing numbers, passport and driving licence numbers,
dates of birth and card security codes: redacted when the text says what they are (policy
`custom` patterns, real Presidio), left alone when it does not."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import ingest_and_read_back, make_prompt, scan_for

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
    # a birthday with its day, a sort code, a routing number (the phone rule typed it a
    # phone number), a card's CVV and a driving licence number: all stored in the clear
    # (or mistyped) before 2026-12-07's second pass
    ("Remind them my birthday is 12 March 1985", "12 March 1985", "DATE_OF_BIRTH"),
    ("birthday: 03/12/1985 (please keep it private)", "03/12/1985", "DATE_OF_BIRTH"),
    ("My bday's on the 3rd of March, plan something", "3rd of March", "DATE_OF_BIRTH"),
    ("Transfer to sort code 12-34-56 and account 12345678", "12-34-56", "BANK_ACCOUNT"),
    ("my routing number is 021000021, is that Chase?", "021000021", "BANK_ACCOUNT"),
    ("Card declined again, the CVV 737 is right", "737", "SECRET"),
    ("the card security code: 4821", "4821", "SECRET"),
    ("my driver's license number is D1234567, renew it", "D1234567", "DRIVER_LICENSE"),
    ("Driving licence MORGA753116SM9IJ was stolen", "MORGA753116SM9IJ", "DRIVER_LICENSE"),
    # a National Insurance number, an identity card's number, a tax ID, a SIN: in the clear
    # before (or a phone number, for its "number")
    ("my national insurance number is QQ 12 34 56 C", "QQ 12 34 56 C", "NATIONAL_ID"),
    ("NI number: AB123456C, employer asks", "AB123456C", "NATIONAL_ID"),
    ("my ID card number is L01X00T47, lost it", "L01X00T47", "NATIONAL_ID"),
    ("I am self-employed, my tax ID 12-3456789 is on it", "12-3456789", "NATIONAL_ID"),
    ("my SIN is 046 454 286, is it safe to share?", "046 454 286", "NATIONAL_ID"),
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


@pytest.mark.parametrize(("text", "kept"), [
    ("Help me plan a birthday party on 12 March for 20 guests", "12 March"),
    ("Happy birthday Mary 21 today, write her a poem", "21 today"),
    ("What should my birthday 2024 plans be?", "2024"),
    ("Where is the CVV on the back of the card, and is 3 digits normal?", "3 digits"),
    ("I have had my driver's license for 10 years and a clean record", "10 years"),
    ("Do the driving licence 2024 rules apply to me?", "2024"),
    ("How do I sort code 1234 lines of Python by date?", "1234"),
    ("What is a routing number and is 9 digits its length?", "9 digits"),
    ("I have had my ID card for 2 years, is it still valid?", "2 years"),
    ("The national insurance rate is 12% from 2024", "2024"),
    ("Do I need the tax ID 2024 form?", "2024"),
    ("sin 30 degrees is 0.5 and sin 45 is 0.7071", "sin 45"),
])
def test_cue_words_without_the_value_leave_the_prompt_alone(
        redactor: Redactor, text: str, kept: str) -> None:
    out = redacted(redactor, text)
    for entity in ("DATE_OF_BIRTH", "BANK_ACCOUNT", "SECRET", "DRIVER_LICENSE", "NATIONAL_ID"):
        assert f"<{entity}>" not in out
    assert kept in out



def test_a_pasted_form_keeps_its_field_labels_and_loses_every_value(redactor: Redactor) -> None:
    """A label at the start of a line before a value with digits names a field, not a
    speaker: "DOB", "SSN", "IBAN", "CVV" were redacted as <PERSON>, losing what the value
    was."""
    form = ("Please update my record.\nDOB: 02/01/1980\nSSN: 536-22-8467\n"
            "IBAN: GB82WEST12345698765432\nCVV: 737\nPIN: 4821\nExp: 08/27")
    out = redacted(redactor, form)
    for value in ("02/01/1980", "536-22-8467", "GB82WEST12345698765432", "737",
                  "4821"):
        assert value not in out
    for label in ("DOB:", "SSN:", "IBAN:", "CVV:", "Exp: 08/27"):
        assert label in out
    assert "<PERSON>" not in out
    # a speaker label before words is still a name
    assert "<PERSON>" in redacted(redactor, "Vsevolod: Who are you?")


@pytest.mark.parametrize(("form", "value", "label"), [
    ("Name: Jane Roe\nDOB: 02/01/1980", "Jane Roe", "DOB: <DATE_OF_BIRTH>"),
    ("Full name: Ahmed Khan\nAddress: 12 Main Street", "Ahmed Khan", "Address: <LOCATION>"),
    ("Patient: Sarah Connor\nAge: 34\nDiagnosis: flu", "Sarah Connor", "Age: 34"),
    ("City: Leeds\nPostcode: LS1 4AP", "Leeds", "Postcode: LS1 4AP"),
])
def test_a_name_on_a_form_line_leaves_the_next_lines_label(
        redactor: Redactor, form: str, value: str, label: str) -> None:
    """spaCy read "Jane Roe\nDOB" as one name: the next line's label went into the
    placeholder (`<PERSON>: <DATE_OF_BIRTH>`), and the form no longer said what it held."""
    out = redacted(redactor, form)
    assert value not in out
    assert label in out


def test_names_listed_over_lines_are_all_still_redacted(redactor: Redactor) -> None:
    out = redacted(redactor, "Bob Marley\nJimi Hendrix\nWho sold more records?")
    for name in ("Bob", "Marley", "Jimi", "Hendrix"):
        assert name not in out

# Canaries: (request id, prompt, the value that must not reach the store, its placeholder).
CANARIES = [
    ("dob", "My birthday is 14 February 1979, sign me up", "14 February 1979",
     "<DATE_OF_BIRTH_1>"),
    ("sort", "Pay it to sort code 40-47-84 by Friday, from my other bank", "40-47-84",
     "<BANK_ACCOUNT_1>"),
    ("aba", "routing number: 026009593 for the wire", "026009593", "<BANK_ACCOUNT_1>"),
    ("cvv", "card ends 4242 and the cvc2 is 7319, why declined?", "7319", "<SECRET_1>"),
    ("dl", "driving licence no. MORGA753116SM9IJ expired", "MORGA753116SM9IJ",
     "<DRIVER_LICENSE_1>"),
    ("nino", "my NINO is JG103759A for the payslip", "JG103759A", "<NATIONAL_ID_1>"),
]


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str], str]:
    """The canary prompts sent through the service's socket, then read back decrypted."""
    return ingest_and_read_back(tmp_path_factory.mktemp("identifiers-svc"),
                                [(name, text) for name, text, _, _ in CANARIES],
                                user_prefix="id")


@pytest.mark.slow
@pytest.mark.parametrize(("name", "text", "value", "placeholder"), CANARIES,
                         ids=[c[0] for c in CANARIES])
def test_the_socket_stores_a_named_identifier_only_as_a_placeholder(
        ingested: tuple[Path, dict, str], name: str, text: str, value: str,
        placeholder: str) -> None:
    data, stored, dump = ingested
    assert stored[name] == text.replace(value, placeholder)
    assert value not in dump
    if len(value) >= 8:  # a short code's digits turn up by chance in the encrypted files
        assert scan_for(data, [value]) == []
