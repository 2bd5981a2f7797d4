"""Leftovers of the third pass of 2026-12-07 (real Presidio, shipped policy): a BIC in lower
case or without its cue, a passport number before its cue, a form's label read as a name,
a matrix product cut as a URL, and a prompt NFKC blows up."""

from __future__ import annotations

import pytest
from conftest import make_prompt

from appliance.redact import Redactor


def redacted(redactor: Redactor, text: str) -> str:
    return redactor.redact(make_prompt(text)).text


@pytest.mark.parametrize(("text", "value", "expected"), [
    ("send it to deutdeff500", "deutdeff500", "send it to <BANK_ACCOUNT>"),
    ("BIC deutdeff", "deutdeff", "BIC <BANK_ACCOUNT>"),
    ("the swift code is bofaus3n", "bofaus3n", "the swift code is <BANK_ACCOUNT>"),
    ("Please wire it to NWBKGB2L, thanks", "NWBKGB2L", "wire it to <BANK_ACCOUNT>, thanks"),
    ("pay COBADEFFXXX today", "COBADEFFXXX", "pay <BANK_ACCOUNT> today"),
])
def test_a_bic_in_lower_case_or_without_its_cue_is_redacted(
        redactor: Redactor, text: str, value: str, expected: str) -> None:
    out = redacted(redactor, text)
    assert value not in out
    assert expected in out


@pytest.mark.parametrize("text", [
    "swift delivery please",            # an English word after "swift" (DELIVERY: VE)
    "SWIFT DELIVERY TO ALL CUSTOMERS",
    "I want to buy an iphone15pro",     # a product: its place would start with 1
    "commit cafeba12 fixed it",
    "the summer24 playlist",            # "summer" is a word
    "Our football forecast is interesting",
])
def test_words_shaped_like_a_bic_stay(redactor: Redactor, text: str) -> None:
    assert redacted(redactor, text) == text


@pytest.mark.parametrize(("text", "value", "expected"), [
    ("X1234567 is my passport number", "X1234567", "<PASSPORT> is my passport number"),
    ("C01X00T47 was her passport no.", "C01X00T47", "<PASSPORT> was her passport no."),
    ("D1234567 is my driver's license number", "D1234567",
     "<DRIVER_LICENSE> is my driver's license number"),
    ("AB123456C is my NI number, thanks", "AB123456C", "<NATIONAL_ID> is my NI number"),
    ("943 476 5919 is my NHS number", "943 476 5919", "<NATIONAL_ID> is my NHS number"),
    ("L01X00T47 is my ID card number.", "L01X00T47", "<NATIONAL_ID> is my ID card number."),
])
def test_an_id_number_before_its_cue_is_redacted_and_the_cue_kept(
        redactor: Redactor, text: str, value: str, expected: str) -> None:
    out = redacted(redactor, text)
    assert value not in out
    assert expected in out


@pytest.mark.parametrize("text", [
    "X1234567 is my passport photo's file name",
    "2024 is the passport renewal year",
    "A1234567 is the passport number format they use",
])
def test_a_value_before_a_passport_cue_that_goes_on_stays(redactor: Redactor, text: str) -> None:
    assert redacted(redactor, text) == text


@pytest.mark.parametrize(("text", "expected"), [
    ("Qty: 5 boxes", "Qty: 5 boxes"),  # "Qty" and "Tel" are in a first-name list
    ("Tel: 5 lines", "Tel: 5 lines"),
    ("Ref: 12\nQty: 5 boxes\nTel: 020 7946 0958", "Ref: 12\nQty: 5 boxes\nTel: <PHONE_NUMBER>"),
    ("Attn: Sales, Qty : 3", "Attn: Sales, Qty : 3"),
])
def test_a_forms_label_before_its_colon_is_no_name(
        redactor: Redactor, text: str, expected: str) -> None:
    assert redacted(redactor, text) == expected


def test_a_name_after_a_forms_label_is_still_redacted(redactor: Redactor) -> None:
    assert redacted(redactor, "Attn: Maria Lopez") == "Attn: <PERSON>"


@pytest.mark.parametrize("code", [
    "scores = q@k.transpose(-2, -1) / math.sqrt(d)",  # was q@<URL>anspose (.tr)
    "x = np.array([1, 2])",                           # was <URL>ray (.ar)
    "df.groupby('a').sum()",                          # was <URL>by (.gr)
    "for k in self.items():",                         # was <URL>ems (.it)
])
def test_code_is_not_cut_mid_word_as_a_url(redactor: Redactor, code: str) -> None:
    assert redacted(redactor, code) == code


@pytest.mark.parametrize(("text", "expected"), [
    ("visit https://example.community/x today", "visit <URL> today"),  # was <URL>munity/x
    ("see www.example.community now", "see <URL> now"),
    ("open example.com/jsmith now", "open <URL> now"),
])
def test_a_url_is_redacted_whole(redactor: Redactor, text: str, expected: str) -> None:
    assert redacted(redactor, text) == expected
