"""Structured identifiers written to dodge patterns: spaced, dotted, spelled out.

Presidio's own recognisers find `jane@example.com`, `DE89 3704 ...`,
`536-22-8467` and `192.168.1.7`. These find what they miss once the text is
normalised (`normalize.py` has already removed zero-width characters and
mapped look-alike digits and separators): e-mail addresses with spaces around
`@` and `.` or spelled `at`/`dot`, IBANs grouped with dots or " - ", social
security numbers with spaced separators, and IPv4 addresses with spaced,
bracketed or spelled-out dots. Every hit is checked (TLD, IBAN mod-97,
SSN area/group/serial, octet range) before it is reported.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from appliance.redact.budget import timed
from appliance.redact.recognizers import SpanRecognizer, has_context, word_set

# One separator between digit groups: "-", ".", "/" with optional spaces, or spaces.
GROUP_SEP = r"(?:[ \t]?[.\-/][ \t]?|[ \t])"

# --- e-mail --------------------------------------------------------------------------------

# Generic and common TLDs; any two-letter country code is accepted as well.
GENERIC_TLDS = word_set(
    "com org net edu gov mil int info biz name pro io ai app dev co me tv xyz online "
    "site tech email mail cloud store shop blog news live one top page uk eu"
)
_AT = r"(?:[ \t]*@[ \t]*|[ \t]*[(\[{<][ \t]*at[ \t]*[)\]}>][ \t]*|[ \t]+at[ \t]+)"
_DOT = r"(?:\.|[ \t]\.[ \t]|[ \t]*[(\[{<][ \t]*dot[ \t]*[)\]}>][ \t]*|[ \t]+dot[ \t]+)"
_LOCAL_WORD = r"[A-Za-z0-9][A-Za-z0-9_%+\-]*"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?"
SPELLED_EMAIL = timed(
    rf"(?i)(?<![\w.@])({_LOCAL_WORD}(?:{_DOT}{_LOCAL_WORD}){{0,7}})({_AT})"
    rf"({_LABEL}(?:{_DOT}{_LABEL}){{1,3}})(?![\w@])"
)
_DOT_SPLIT = timed(rf"(?i){_DOT}")
# Words that precede "at" in ordinary sentences ("look at google dot com").
NOT_A_MAILBOX = word_set(
    "look looking looked arrive arrived arriving be is are was were am meet me us him "
    "her them it this that stay staying stayed work working live living lives here "
    "there available found find sign signed log logged"
)


# Two-letter country codes that are also words: after a spaced " . " they end a sentence.
WORD_TLDS = word_set(
    "it in to at be is us no so do go my by an as or on me am id hi ok"
)


def _tld_ok(tld: str, country_codes: frozenset[str], *, spaced: bool) -> bool:
    low = tld.lower()
    if spaced and (low in WORD_TLDS or tld[:1].isupper()):
        return False
    return low in GENERIC_TLDS or (len(low) == 2 and low in country_codes)


# An object's own attributes in code ("x@self.weight"), and what opens an expression.
RECEIVERS = word_set("self this cls")
# (A dash before a word is prose's: "bob@self.local - he knows".)
_OPERATOR_AFTER = timed(r"[ \t]*(?:[+*/%]|\*\*|//|-(?![ \t]+[a-z]{2}))[ \t]*[\w(]")
_OPERATOR_BEFORE = timed(r"(?:[=(+\-*/%]|\breturn)[ \t]*$")


def _in_code(m: re.Match[str]) -> bool:
    """Whether `a@b.c` written as a mailbox is a matrix product in code: right before a call
    or an index (`q@k.transpose(-2, -1)`), or an operand before another operator with an
    object's attribute (`x@self.weight + b`) or after `=`, `return` or an operator (`y =
    x@W.weight + b`). `bob@self.local` alone is mail."""
    text = m.string
    if text.startswith(("(", "["), m.end()):
        return True
    if not _OPERATOR_AFTER.match(text, m.end()):
        return False
    domain = m.group(3)
    dot = _DOT_SPLIT.search(domain)
    before = text[max(0, m.start() - 20):m.start()].rsplit("\n", 1)[-1]
    return bool(dot is not None and domain[:dot.start()].lower() in RECEIVERS
                or _OPERATOR_BEFORE.search(before))


class SpelledEmailRecognizer(SpanRecognizer):
    """`jane . doe @ example . com`, `jane at example dot com`, `jane [at] example [dot] org`,
    and `jane.doe@corp.local`: a mailbox under a domain that is no public suffix."""

    ENTITY = "EMAIL_ADDRESS"

    def __init__(self) -> None:
        super().__init__()
        import pycountry

        self._countries = frozenset(c.alpha_2.lower() for c in pycountry.countries)

    def spans(self, text: str, artifacts: Any) -> Iterator[tuple[int, int, float]]:
        if "@" not in text and not re.search(r"(?i)\bat\b|\[at\]|\(at\)", text):
            return
        pos = 0
        while (m := SPELLED_EMAIL.search(text, pos)) is not None:
            if self._valid(m):
                yield m.start(), m.end(), 0.85
                pos = m.end()
            else:  # "me at jane . doe @ ...": retry from the next word
                pos = m.start() + 1

    def _valid(self, m: re.Match[str]) -> bool:
        local, at, domain = m.group(1), m.group(2), m.group(3)
        last_dot = list(_DOT_SPLIT.finditer(domain))[-1].group()
        tld = domain[domain.rindex(last_dot) + len(last_dot):]
        if at == "@" and last_dot == "." and not re.search(r"\s", m.group()):
            # Written as a mailbox: Presidio's recogniser takes it only under a public
            # suffix, so `jane.roe@corp.local` or `@acme.internal` (an intranet's
            # mail) would be left, or cut by a URL hit (`jane.ro` is a .ro site). Not right
            # before a call or an index: `q@k.transpose(-2, -1)` is a matrix product.
            return tld.isalpha() and len(tld) >= 2 and not _in_code(m)
        if not _tld_ok(tld, self._countries, spaced=last_dot != "."):
            return False
        if "@" in at:
            # Without any space Presidio's own recogniser has it.
            return bool(re.search(r"\s", m.group()))
        if not any(c in at for c in "([{<"):
            # A bare " at ": the mailbox is not an ordinary word, the domain has a dot.
            return local.lower() not in NOT_A_MAILBOX and bool(_DOT_SPLIT.search(domain))
        return True


# --- IBAN ----------------------------------------------------------------------------------

# Country code and check digits (a space or the separator may stand between them: "GB 29
# NWBK ...", "DE-89-3704-..."), then groups of four (the last one shorter) with one separator
# style; upper case as IBANs are printed. The compact form is Presidio's.
IBAN_CANDIDATE = timed(
    r"(?<![\w])[A-Z]{2}(?:[ \t]?[.\-/]?[ \t]?)\d{2}(?P<sep>[ \t]?[.\-/][ \t]?|[ \t])[A-Z0-9]{4}"
    r"(?:(?P=sep)[A-Z0-9]{4}){1,6}(?:(?P=sep)[A-Z0-9]{1,4})?(?![\w])"
)
IBAN_CONTEXT = timed(r"(?i)\b(?:iban|bank|account|acct|transfer|wire|pay|sepa|bic|swift)")


def iban_ok(compact: str) -> bool:
    """ISO 13616 mod-97 check on an IBAN without separators."""
    if not 15 <= len(compact) <= 34 or not compact[:2].isalpha() or not compact[2:4].isdigit():
        return False
    moved = compact[4:] + compact[:4]
    digits = "".join(str(int(c, 36)) for c in moved)
    return int(digits) % 97 == 1


class SeparatedIbanRecognizer(SpanRecognizer):
    """IBANs grouped with dots, " - ", slashes or mixed separators (mod-97 checked)."""

    ENTITY = "IBAN_CODE"

    def spans(self, text: str, artifacts: Any) -> Iterator[tuple[int, int, float]]:
        for m in IBAN_CANDIDATE.finditer(text):
            compact = re.sub(r"[^A-Z0-9]", "", m.group())
            if sum(c.isdigit() for c in compact) * 2 >= len(compact) and iban_ok(compact):
                score = 0.9 if has_context(text, m.start(), m.end(), IBAN_CONTEXT) else 0.75
                yield m.start(), m.end(), score


# --- BIC (SWIFT code) -----------------------------------------------------------------------

# A bank's BIC right after its name: "BIC: DEUTDEFF", "SWIFT code DEUTDEFF500", "the
# SWIFT/BIC is NWBKGB2L", "BIC deutdeff". Four letters (the bank), a country code, two letters
# or digits (the place) and an optional branch of three, in capitals or in lower case.
_BIC = r"([A-Za-z]{4}([A-Za-z]{2})[A-Za-z0-9]{2}(?:[A-Za-z0-9]{3})?)"
BIC_AFTER_CUE = timed(
    r"(?i:\b(?:bic|swift)(?:[ \t]*(?:/|or|and)[ \t]*(?:bic|swift))?"
    r"(?:[ \t]*(?:code|number|no\.?|nr|id|\#))?[ \t]*"
    r"(?:[:=\#][ \t]*|(?:is|was)(?:[ \t]*:)?[ \t]+)?)"
    + _BIC + r"(?![\w\-])"
)
# A BIC alone, with no cue ("send it to deutdeff500", "wire it to NWBKGB2L"): a word of its
# own, not part of a path, an address or a handle.
BIC_ALONE = timed(r"(?<![\w\-@./#:])" + _BIC + r"(?![\w\-@]|[.:/]\w)")


class BicRecognizer(SpanRecognizer):
    """A BIC (SWIFT code): the bank's half of an account's details, typed BANK_ACCOUNT as a
    sort code or a routing number is. Its country code is checked, its letters are all
    capitals or all lower case and no English word ("swift delivery" stays). After "BIC" or
    "SWIFT" any such code; without them only one whose place or branch a digit shows a code
    (`DEUTDEFF500`, `nwbkgb2l`; a branch of three digits or `XXX`), whose place does not
    start with 0 or 1 ("iphone15pro", "cafeba12" stay) and whose first six letters are no
    word either ("summer24" stays). Without the word lists (name lists off) only a code
    after its cue, in capitals when it has no digit."""

    ENTITY = "BANK_ACCOUNT"

    def __init__(self, gazetteer: Any = None) -> None:
        super().__init__()
        import pycountry

        self._countries = frozenset(c.alpha_2 for c in pycountry.countries) | {"XK"}
        self._g = gazetteer

    def _word(self, letters: str) -> bool:
        if self._g is None:
            return True
        from appliance.redact.people import is_word

        low = letters.lower()
        return is_word(low, self._g) or low in self._g.first or low in self._g.last

    def _code(self, code: str, country: str) -> bool:
        if country.upper() not in self._countries or not (code.isupper() or code.islower()):
            return False
        if code.isalpha():
            return (self._g is None and code.isupper()) or not self._word(code)
        return True

    def spans(self, text: str, artifacts: Any) -> Iterator[tuple[int, int, float]]:
        cued: list[int] = []
        for m in BIC_AFTER_CUE.finditer(text):
            if self._code(m.group(1), m.group(2)):
                cued.append(m.start(1))
                yield m.start(1), m.end(1), 0.95
        for m in BIC_ALONE.finditer(text):
            code = m.group(1)
            if m.start(1) in cued or not self._code(code, m.group(2)):
                continue
            place, branch = code[6:8], code[8:].upper()
            if (place[0] not in "01" and (any(c.isdigit() for c in place) or branch.isdigit()
                                          or branch == "XXX") and not self._word(code[:6])):
                yield m.start(1), m.end(1), 0.85


# --- US social security numbers ------------------------------------------------------------

SSN_CANDIDATE = timed(
    r"(?<![\w.\-])(\d{3})([ \t]?[.\-/][ \t]?|[ \t]+)(\d{2})([ \t]?[.\-/][ \t]?|[ \t]+)(\d{4})"
    r"(?![\w]|[.\-]\d)"
)
SSN_CONTEXT = timed(r"(?i)\b(?:ssn|ssns|social security|social|security number|ss#|ss no|"
                    r"tin|taxpayer)\b")


def ssn_ok(area: str, group: str, serial: str) -> bool:
    """The SSA never issues area 000, 666 or 9xx, group 00 or serial 0000."""
    return area not in ("000", "666") and not area.startswith("9") and group != "00" \
        and serial != "0000"


class SeparatedSsnRecognizer(SpanRecognizer):
    """`536 - 22 - 8467`, `536 / 22 / 8467`: the 3-2-4 grouping with any one separator."""

    ENTITY = "US_SSN"

    def spans(self, text: str, artifacts: Any) -> Iterator[tuple[int, int, float]]:
        for m in SSN_CANDIDATE.finditer(text):
            area, sep1, group, sep2, serial = m.groups()
            if sep1.strip() != sep2.strip() or not ssn_ok(area, group, serial):
                continue
            context = has_context(text, m.start(), m.end(), SSN_CONTEXT, before=50, after=20)
            if context or sep1.strip():
                yield m.start(), m.end(), 0.85 if context else 0.5


# --- IPv4 ----------------------------------------------------------------------------------

_OCTET = r"(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IP_DOT = r"(?:[ \t]*\.[ \t]*|[ \t]*[(\[{][ \t]*(?:\.|dot)[ \t]*[)\]}][ \t]*|[ \t]+dot[ \t]+)"
SPELLED_IP = timed(rf"(?i)(?<![\w.])({_OCTET}{_IP_DOT}){{3}}{_OCTET}(?![\w]|\.\d)")
DASHED_IP = timed(rf"(?<![\w.\-])(?:ip-)?{_OCTET}-{_OCTET}-{_OCTET}-{_OCTET}(?![\w\-])")
IP_CONTEXT = timed(r"(?i)\b(?:ip|ips|ipv4|address|host|hostname|server|ping|ssh|vpn|"
                   r"router|gateway|subnet|firewall|node|dns|proxy)\b|\bip-")


class SpelledIpRecognizer(SpanRecognizer):
    """`10 . 0 . 0 . 7`, `10[.]0[.]0[.]7`, `10 dot 0 dot 0 dot 7`; `ip-10-0-0-7` in context."""

    ENTITY = "IP_ADDRESS"

    def spans(self, text: str, artifacts: Any) -> Iterator[tuple[int, int, float]]:
        for m in SPELLED_IP.finditer(text):
            if re.fullmatch(r"[\d.]+", m.group()):
                continue  # plain dotted quad: Presidio's
            yield m.start(), m.end(), 0.8
        for m in DASHED_IP.finditer(text):
            if m.group().startswith("ip-") or has_context(text, m.start(), m.end(), IP_CONTEXT):
                yield m.start(), m.end(), 0.7
