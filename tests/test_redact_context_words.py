"""Presidio's context words work in the redactor: a weak pattern hit next to its context word
("SSN" before nine bare digits) is raised over the policy's threshold and redacted. Until
2026-12-06 no word of a prompt ever counted (Presidio built its keyword list from spaCy's
lemmas, empty with no lemmatiser running), so "My SSN is 536228467" was stored as it was.
Context words count as whole words: "ip" in "script" raised a bare "::" of code to an IP
address. The everyday words "social" and "security" count only right before the number or as
"social security": "social media post 536228467" was an SSN. Real Presidio and the real spaCy
model."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import make_prompt

SSN_TEXTS = [
    ("My SSN is 536228467, can you check the form for me?", ["536228467"]),
    ("Here are the SSNs: 536228467 and 412559871.", ["536228467", "412559871"]),
    ("Please check the employee record, ssn=536228467.", ["536228467"]),
    ("My social is 536228467.", ["536228467"]),
]


@pytest.mark.parametrize(("text", "numbers"), SSN_TEXTS)
def test_a_context_word_raises_a_weak_ssn_and_it_is_redacted(
        redactor: Any, text: str, numbers: list[str]) -> None:
    redacted = redactor.redact(make_prompt(text))
    for number in numbers:
        assert number not in redacted.text
    assert redacted.text.count("<US_SSN>") == len(numbers), redacted.text
    # It is the context word that did it: the pattern alone scores 0.05.
    with redactor._nlp.memory_zone():
        results = redactor._analyzer.analyze(text=text, language="en", entities=["US_SSN"],
                                             return_decision_process=True)
    assert results and all(r.analysis_explanation.supportive_context_word
                           and r.analysis_explanation.original_score < 0.4 <= r.score
                           for r in results)


def test_without_a_context_word_the_digits_stay(redactor: Any) -> None:
    text = "We shipped 536228467 units to the depot."
    assert redactor.redact(make_prompt(text)).text == text


@pytest.mark.parametrize("text", [
    "Write a python script that reverses a list with lst[::-1] and prints it.",
    "The description says to slice with s[::] to copy it.",
    "Our cybersecurity team flagged ticket 536228467 yesterday.",
])
def test_a_context_word_inside_another_word_does_not_count(redactor: Any, text: str) -> None:
    assert redactor.redact(make_prompt(text)).text == text


@pytest.mark.parametrize("text", [
    "The social media post 536228467 went viral overnight.",
    "Please close security ticket 987654321 when the fix ships.",
    "Our security camera logged event 536228467 at noon.",
    "My social worker's case 536228467 is closed.",
])
def test_an_everyday_context_word_describing_another_thing_does_not_count(
        redactor: Any, text: str) -> None:
    """"social" and "security" are SSN context words, but "social media" and "security
    ticket" name something else: the nine digits after them are not an SSN and stay."""
    assert redactor.redact(make_prompt(text)).text == text


@pytest.mark.parametrize("text", [
    "My social security is 536228467.",
    "Her Social Security ID 536228467 is on the form.",
    "social security number 536-22-8467",
])
def test_social_security_as_a_phrase_still_counts(redactor: Any, text: str) -> None:
    redacted = redactor.redact(make_prompt(text)).text
    assert "536" not in redacted and "<US_SSN>" in redacted, redacted


@pytest.mark.parametrize("text", [
    "My SSN is on file, but my order number is 536228467.",
    "I lost my SSN card; the tracking number 536228467 shows it shipped.",
    "SSN question: ticket #536228467 is still open.",
    "ssn, invoice no. 53622-8467",
])
def test_a_number_named_an_order_or_ticket_is_no_ssn_after_an_ssn_word(
        redactor: Any, text: str) -> None:
    """The text calls the digits an order, tracking or ticket number: the "SSN" a few words
    before does not make them one (they were redacted as US_SSN)."""
    assert redactor.redact(make_prompt(text)).text == text


@pytest.mark.parametrize(("text", "ssn"), [
    ("My social security number, for your reference: 536228467", "536228467"),
    ("Here is my SSN for the case: 536228467", "536228467"),
    ("ssn for the order: 536228467", "536228467"),
    ("order ssn 536228467", "536228467"),
    ("security 987654321", "987654321"),
    ("DOB 02/01/1980, security 536228467", "536228467"),
])
def test_an_ssn_next_to_an_order_word_or_after_a_lone_security_is_still_redacted(
        redactor: Any, text: str, ssn: str) -> None:
    """A reference noun framed by "for" ("for your reference:") or with the SSN word after
    it labels the SSN itself; "security" right before nine digits is the shorthand of
    "social security" in a note (docs/redaction.md, "Everyday context words")."""
    redacted = redactor.redact(make_prompt(text)).text
    assert ssn not in redacted and "<US_SSN>" in redacted, redacted


def test_the_ssn_is_redacted_and_the_order_number_after_it_kept(redactor: Any) -> None:
    redacted = redactor.redact(make_prompt(
        "My SSN is 536228467 and my order 412559871 shipped.")).text
    assert redacted == "My SSN is <US_SSN> and my order 412559871 shipped.", redacted


@pytest.mark.parametrize("text", [
    "Please add my SSN to the order: 536228467",
    "Put my social security number on the ticket: 536228467",
    "ssn, attach it to the booking: 53622-8467",
])
def test_an_ssn_the_text_puts_on_an_order_after_a_colon_is_still_redacted(
        redactor: Any, text: str) -> None:
    """After the noun alone, a colon introduces what goes on the order or ticket, here the
    SSN the text speaks of; a number of the order has its label ("order number:", "ticket
    #"). Stored in the clear between 90165d6 and this change."""
    redacted = redactor.redact(make_prompt(text)).text
    assert "536" not in redacted and "<US_SSN>" in redacted, redacted
