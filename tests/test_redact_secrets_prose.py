"""Passwords, PINs and card security codes as people write them in a sentence: named with
what they open ("the password for the office wifi is ..."), in a contraction ("my
password's ..."), "now", or as set ("I set my PIN to ..."). Before, only a value right after
the word (and "is", ":" or "=") was taken, so these went into the store in the clear. The
words before the value stay; words about passwords and pins with no secret in them stay
whole. Real Presidio and spaCy (policies/redaction.toml)."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import make_prompt


def redacted_text(redactor: Any, text: str) -> str:
    return str(redactor.redact(make_prompt(text)).text)


@pytest.mark.parametrize(("text", "value", "kept"), [
    ("The password for the office wifi is Sunshine2024", "Sunshine2024", "office wifi is"),
    ("my password for gmail is hunter22, can you check it", "hunter22", "for gmail is"),
    ("the password to my laptop is 'swordfish' but it fails", "swordfish", "to my laptop"),
    ("my password's Tr0ub4dor", "Tr0ub4dor", "my password's"),
    ("my new password is now hunter22", "hunter22", "password is now"),
    ("new password will be Hunter22! from Monday", "Hunter22", "will be"),
    ("I set my password to hunter22 yesterday", "hunter22", "set my password to"),
    ("change the wifi password to Hunter22!", "Hunter22", "password to"),
    ("the PIN for my debit card is 4821", "4821", "for my debit card is"),
    ("my PIN to the alarm is 0419.", "0419", "to the alarm is"),
    ("his pin code for the door is 1234, don't share it", "1234", "for the door is"),
    ("my pin's 4821", "4821", "my pin's"),
    ("PIN #: 4821", "4821", ""),
    ("the security code on the back is 123", "123", "on the back is"),
    ("the CVV on my card is 737", "737", "on my card is"),
])
def test_a_secret_named_with_what_it_opens_is_redacted(redactor: Any, text: str, value: str,
                                                       kept: str) -> None:
    out = redacted_text(redactor, text)
    assert value not in out, out
    assert "<SECRET" in out and kept in out, out


@pytest.mark.parametrize("text", [
    "the password for the wifi is on the router",
    "The password for the admin account is in the vault under db1",
    "the password of length 12 is required",
    "my password's length is 8",
    "Set the password to expire after 90 days",
    "I changed my password to something with 12 characters",
    "My password is now stronger",
    "The password will be emailed to you in 24 hours",
    "the pin for GPIO 18 is 12",
    "the pin on the 555 timer is 4",
    "change the pin to 13 on the board",
    "the security code on the back of the card",
])
def test_words_about_passwords_and_pins_stay(redactor: Any, text: str) -> None:
    assert "SECRET" not in {h.entity_type for h in redactor.analyze(text)}
