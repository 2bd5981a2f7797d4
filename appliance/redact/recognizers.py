"""Pattern recognisers Presidio lacks or gets wrong: phones, cards, SSNs named as another
kind of number (street addresses: `addresses.py`).

Each recogniser scores its own context (a phone number needs a phone word
nearby unless its format alone says "phone"), so Presidio's lemma-based
context enhancement is switched off for their results. Imported only after
`redact.offline_environment` has run (Presidio pulls in tldextract).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from presidio_analyzer import RecognizerResult
from presidio_analyzer.predefined_recognizers import UsSsnRecognizer

from appliance.redact.budget import timed

# The recogniser base is in spans.py; the other rule modules import it from here.
from appliance.redact.spans import SpanRecognizer, has_context
from appliance.redact.spans import make_result as make_result
from appliance.redact.spans import word_set as word_set

# --- phone numbers -------------------------------------------------------------------------

PHONE_CONTEXT = timed(
    r"(?i)\b(?:phone|tel|telephone|mobile|cell|cellphone|fax|call|calling|called|reach|"
    r"text|sms|whatsapp|signal|number|no|nr|desk|office|landline|home|work|dial|ring|"
    r"contact|answering|answer|hotline|helpline|message|messages|messaging|registered)\b|"
    r"\bph\b|☎|📞"
)
PHONE_CANDIDATE = timed(
    r"(?<![\w@/+.\-])(?:\+\s?|00)?(?:\(\d{1,4}\)\s?|\d)[\d .\-()]{4,22}\d"
    r"(?:\s?(?:x|ext\.?|extension|#)\s?\d{1,6})?(?![\w@/]|[.\-]\d)"
)
PHONE_EXTENSION = timed(r"\s?(?:x|ext\.?|extension|#)\s?\d{1,6}$")
# Groups separated by one space, or by "." / "-" with optional spaces ("555 - 0134").
_PSEP = r"(?:[ ]?[.\-][ ]?|[ ])"
PHONE_SHAPE = timed(rf"(?:\+\s?|00)?(?:\(\d+\)|\d+)(?:{_PSEP}?(?:\(\d+\)|\d+))*")
SSN_SHAPE = timed(rf"\d{{3}}{_PSEP}\d{{2}}{_PSEP}\d{{4}}")
NANP = timed(
    rf"(?:\+?1{_PSEP}?|001{_PSEP}?)?(?:\(\d{{3}}\)\s?|\d{{3}}{_PSEP})\d{{3}}{_PSEP}\d{{4}}"
)
# A noun naming a non-personal reference right before the digits ("order 536228467",
# "tracking number: 94001118"); not "account" or "customer", which identify a person.
_NUMBER_LABEL = r"s?\.?(?:\s*(?:number|no\.?|nr\.?|num|id|#))?(?:\s+is)?\s*[:#]?\s*$"
IDENTIFIER_BEFORE = timed(
    r"(?i)\b(?:order|ticket|invoice|tracking|case|reference|ref|booking|reservation|"
    r"confirmation|shipment|parcel|transaction|receipt|serial|sku)" + _NUMBER_LABEL
)
# After the noun alone (no "number", "no.", "#", "id"), a colon introduces what the text
# puts on the order or ticket ("add my SSN to the order: 536228467"), not its number.
_ORDER_LABEL = (r"s?\.?(?:\s*(?:number|no\.?|nr\.?|num|id|#)(?:\s+is)?\s*[:#]?|\s+is)?"
                r"\s*$")
# The same for an SSN shape after an SSN word: only the nouns of a purchase or a support
# ticket, and not after "for" ("for your reference:", "for the case:", "for confirmation:"
# frame the SSN itself; "order number is 536228467" names another number).
ORDER_BEFORE = timed(
    r"(?i)(?<!\bfor\s+(?:(?:the|your|my|this|that|our)\s+)?)"
    r"\b(?:order|ticket|invoice|tracking|booking|reservation|shipment|parcel|receipt|sku)"
    + _ORDER_LABEL
)
NOT_PHONE = timed(
    r"\d{4}[.\-/]\d{1,2}[.\-/]\d{1,2}|\d{1,2}[./]\d{1,2}[./]\d{2,4}|"  # dates
    r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}|\d+\.\d+"
)  # IPs, decimals


def phone_strength(candidate: str) -> float:
    """Prior that a digit string is a phone number from its format alone."""
    body = PHONE_EXTENSION.sub("", candidate).strip()
    digits = sum(c.isdigit() for c in body)
    if not 7 <= digits <= 15 or not PHONE_SHAPE.fullmatch(body) or NOT_PHONE.fullmatch(body):
        return 0.0
    if body.count("(") != body.count(")"):
        return 0.0
    if SSN_SHAPE.fullmatch(body):  # 123-45-6789 is a social security number
        return 0.0
    if body.startswith(("+", "00")) and digits >= 8:
        return 0.75
    if NANP.fullmatch(body):
        return 0.7
    if body.startswith("0") and digits >= 9 and not body.isdigit():
        return 0.5
    return 0.3


class PhoneNumberRecognizer(SpanRecognizer):
    """International, national and local phone formats, extensions included.

    A number whose format is distinctive (+country code, North American
    grouping, trunk prefix 0 with groups) is reported alone; any other run
    of 7-15 digits in groups only next to a phone word ("Mobile:", "call
    me on", "... fax") and never right after a reference noun ("order 536228467").
    """

    ENTITY = "PHONE_NUMBER"

    def spans(self, text: str, artifacts: Any) -> Iterator[tuple[int, int, float]]:
        for m in PHONE_CANDIDATE.finditer(text):
            start, end = m.span()
            while end > start and text[end - 1] in ") " and text[start] != "(":
                end -= 1
            prior = phone_strength(text[start:end])
            if prior == 0.0:
                continue
            if prior < 0.5 and IDENTIFIER_BEFORE.search(text, max(0, start - 40), start):
                continue  # format not a phone's, and named as another kind of number
            if has_context(text, start, end, PHONE_CONTEXT):
                prior = max(prior, 0.3) + 0.4
            if prior >= 0.5:
                yield start, end, min(prior, 0.95)


# --- US social security numbers (Presidio's patterns) ------------------------------------

# Presidio's SSN shapes that count only with a context word (nine bare digits, 5-4, 3-6 and
# 3-2-4 with dashes: 0.05) score under this; its 3-2-4 shape with any separator scores 0.5.
SSN_WEAK_SCORE = 0.5


class SsnRecognizer(UsSsnRecognizer):
    """Presidio's US SSN recogniser (same patterns, checks and context words), except that a
    shape too weak to count alone gets no context word right after the noun of an order or
    a ticket (`ORDER_BEFORE`): in "My SSN is on file, but my order number is 536228467" the
    text names the digits an order number, and the "SSN" before them does not make them
    one. The 3-2-4 shape (0.5: "order 536-22-8467") is reported as before, and an SSN word
    between the noun and the digits ("order ssn 536228467") still counts: the noun is not
    right before them; so does one before the noun alone and a colon ("add my SSN to the
    order: 536228467")."""

    def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None,
                regex_flags: int | None = None) -> list[RecognizerResult]:
        results = super().analyze(text, entities, nlp_artifacts, regex_flags)
        for r in results:
            if r.score < SSN_WEAK_SCORE \
                    and ORDER_BEFORE.search(text, max(0, r.start - 40), r.start):
                # Presidio's context step skips a result marked as already scored by context.
                r.recognition_metadata[RecognizerResult.IS_SCORE_ENHANCED_BY_CONTEXT_KEY] = True
        return list(results)


# --- payment cards -------------------------------------------------------------------------

CARD_CONTEXT = timed(
    r"(?i)\b(?:card|cards|cc|visa|master\s?card|mastercard|amex|american express|credit|"
    r"debit|maestro|jcb|discover|diners|payment|pay|charge|billing)\b"
)
# Groups may be separated by a space, "-", "." or "/", alone or with spaces ("4111 - 1111").
CARD_CANDIDATE = timed(
    r"(?<![\w\-.])(?:\d(?:[ \t]?[\-./][ \t]?|[ \t])?){11,18}\d(?![\w\-]|\.\d)"
)
CARD_PREFIXES = ("2", "3", "4", "5", "6", "1800", "2131")


def luhn_ok(digits: str) -> bool:
    """The Luhn checksum every payment card number satisfies."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = int(ch)
        if i % 2:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


class PaymentCardRecognizer(SpanRecognizer):
    """12-19 digit numbers that pass the Luhn check (any issuer, any grouping)."""

    ENTITY = "CREDIT_CARD"

    def spans(self, text: str, artifacts: Any) -> Iterator[tuple[int, int, float]]:
        for m in CARD_CANDIDATE.finditer(text):
            digits = re.sub(r"\D", "", m.group())
            if not luhn_ok(digits) or len(set(digits)) < 2:
                continue
            if has_context(text, m.start(), m.end(), CARD_CONTEXT, before=50, after=20):
                yield m.start(), m.end(), 0.95
            elif len(digits) >= 13 and digits.startswith(CARD_PREFIXES):
                yield m.start(), m.end(), 0.6
