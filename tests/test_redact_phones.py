"""A bare digit run is a phone number only with a phone word near it, and a word near it means
a whole word: "I bought a security camera, order 536228467, and it has not arrived." was
redacted as PHONE_NUMBER because the window after the number stopped inside "not", and the
"no" left counted as the phone word "no" ("No. 0207 ..."). A number named as another kind of
reference ("order", "ticket", "tracking number") is not a phone unless its format says so.
Real Presidio and the real spaCy model."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import make_prompt


@pytest.mark.parametrize("text", [
    "I bought a security camera, order 536228467, and it has not arrived.",
    "Crate 536228467 is in the cellar.",
    "My order number is 536228467, can you draft a complaint?",
    "Tracking number: 536228467 shows no movement since Monday.",
    "Please close ticket #5362284671 and reopen the invoice no. 536228467.",
])
def test_an_order_or_reference_number_is_not_redacted_as_a_phone(
        redactor: Any, text: str) -> None:
    assert redactor.redact(make_prompt(text)).text == text


@pytest.mark.parametrize(("text", "phone"), [
    ("Please call me at 5551234567 tonight.", "5551234567"),
    ("My office in London is +44 20 7946 0958.", "+44 20 7946 0958"),
    ("Ring the front desk on (555) 123-4567.", "(555) 123-4567"),
    ("My order number is 536228467, call me at 5551234567.", "5551234567"),
    ("Order line: 555-123-4567", "555-123-4567"),
])
def test_a_real_phone_number_is_still_redacted(redactor: Any, text: str, phone: str) -> None:
    redacted = redactor.redact(make_prompt(text)).text
    assert phone not in redacted and "<PHONE_NUMBER>" in redacted, redacted


def test_an_account_number_is_still_redacted(redactor: Any) -> None:
    """Only order-like references lose the phone reading: an account number names a person."""
    redacted = redactor.redact(make_prompt("My account number is 536228467.")).text
    assert "536228467" not in redacted, redacted
