"""Street addresses: a house number and a street, and the lines of its block below.

Moved from `recognizers.py`. Imported only after
`redact.offline_environment` has run, as the other rule modules.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, NamedTuple

from appliance.redact.budget import TimedPattern, timed
from appliance.redact.recognizers import phone_strength
from appliance.redact.spans import SpanRecognizer, word_set

# --- street addresses ----------------------------------------------------------------------

_W = r"[^\W\d_][\w'’.\-]*"  # a word starting with a letter
_T = r"[\w'’.\-]+"  # a word or a number
EN_SUFFIX = (
    r"street|st|road|rd|avenue|ave|av|boulevard|blvd|lane|ln|drive|dr|court|ct|"
    r"place|pl|square|sq|terrace|way|highway|hwy|parkway|pkwy|circle|cir|crescent|"
    r"close|alley|trail|bypass|expressway|freeway|plaza|pike|mews|gardens|row|walk|"
    r"wharf|turnpike|causeway|quay|ridge|heights|forges|flat|flats|fork|junction|"
    r"loop|motorway|crossing|estates"
)
COMPOUND = (
    r"strasse|straße|str\.|gasse|weg|allee|platz|damm|ufer|(?<![eubpt])ring|vej|gade|gatan|vägen|"
    r"gata|gränd|veien|vegen|veg|gate|laan|straat|plein|gracht|dreef|katu|tie|kuja|"
    r"polku|väylä|tori|utca|út|útja|tér|körút|köz|náměstí|nábřeží|ulice|ulica|sokak|sokağı|"
    r"caddesi|bulvarı|stræde|straede|stræti|straeti|braut|vegur|stien|tee|iela|gatvė|gatve|"
    r"cesta|ulitsa|prospekt"
)
# Words that never stand between a house number and an English street type: times
# ("8 PM and play street", "12 : 01 a . m . CT"), verbs and articles ("2 has the place").
NOT_STREET_WORD = (r"(?!(?:a|an|the|but|has|have|had|is|are|was|were|to|in|on|at|of|"
                   r"for|with|from|by|am|pm|a\.|p\.|m\.|years?|hours?|minutes?|days?|times?)"
                   r"(?![\w'’\-]))")
# Central European street names are adjectives: Parmova 109, Mlýnská 15, Dašická 688.
ADJECTIVE_STREET = r"[A-ZÀ-ŽА-Я][^\W\d_]+(?:ova|ová|eva|ská|cká|ského|ovo|ina|ská)"
PREFIX = (
    r"rue|rua|via|viale|vicolo|calle|carrer|avenida|avda\.?|av\.|paseo|camino|carretera|"
    r"piazza|piazzetta|corso|largo|travessa|praça|ul\.|ulica|al\.|aleja|plac|chemin|"
    r"allée|impasse|quai|route de|rte|boulevard|bd\.?|strada|stradă|calea|"
    r"πλατεία|οδός|οδος"
)


class AddressPattern(NamedTuple):
    """A full pattern, tried only in a window around hits of a cheap trigger pattern."""

    pattern: TimedPattern
    score: float
    trigger: TimedPattern | None = None
    before: int = 0
    after: int = 0


def _ci(regex: str) -> TimedPattern:
    return timed("(?i)" + regex)


ADDRESS_PATTERNS = [
    # 221B Baker Street, 1317 Kimberly Way (number first, English street type)
    AddressPattern(
        _ci(
            rf"\b\d{{1,6}}[a-z]?(?:[ \t]+\d{{1,6}})?[ \t]+(?:{NOT_STREET_WORD}{_T}[ \t]+){{0,4}}?"
            rf"(?:{EN_SUFFIX})\b\.?"
        ),
        0.6,
        _ci(rf"\b(?:{EN_SUFFIX})\b"),
        80,
        1,
    ),
    # Hauptstraße 5, Koskikatu 25 (attached street type); Augsburger Strasse 36 (separate)
    AddressPattern(
        _ci(rf"\b[^\W\d_]*(?:{COMPOUND})[ \t]+\d{{1,5}}[a-z]?\b"),
        0.6,
        _ci(rf"(?:{COMPOUND})[ \t]+\d"),
        40,
        8,
    ),
    AddressPattern(
        _ci(rf"\b{_W}[ \t]+(?:{COMPOUND})[ \t]+\d{{1,5}}[a-z]?\b"),
        0.6,
        _ci(rf"(?:{COMPOUND})[ \t]+\d"),
        40,
        8,
    ),
    # Kálmán Imre u. 12
    AddressPattern(
        _ci(rf"(?:{_W}[ \t]+){{0,2}}u\.[ \t]+\d{{1,5}}\b"), 0.55, _ci(r"\bu\.[ \t]+\d"), 60, 8
    ),
    # Via Roma 131, Rue de Piétrain 371, ul. Północna 73, 846 31 Rue Al Imam Al Bakri
    AddressPattern(
        _ci(
            rf"(?:\b\d{{1,6}}[ \t]+(?:\d{{1,6}}[ \t]+)?)?(?<![\w.])(?:{PREFIX})[ \t]+"
            rf"(?:{_W}[ \t]+){{0,4}}?\d{{1,5}}[a-z]?\b"
        ),
        0.6,
        _ci(rf"(?<![\w.])(?:{PREFIX})[ \t]"),
        16,
        80,
    ),
    AddressPattern(
        _ci(rf"\b\d{{1,6}}[ \t]+(?:\d{{1,6}}[ \t]+)?(?:{PREFIX})[ \t]+(?:{_W}[ \t]*){{1,5}}"),
        0.6,
        _ci(rf"(?<![\w.])(?:{PREFIX})[ \t]"),
        16,
        80,
    ),
    AddressPattern(
        timed(rf"\b{ADJECTIVE_STREET}[ \t]+\d{{1,5}}[a-z]?\b"),
        0.5,
        timed(r"(?:ova|ová|eva|ská|cká|ského|ovo|ina)[ \t]+\d"),
        40,
        8,
    ),
    # Apt. 4B, Suite 210
    AddressPattern(_ci(r"\b(?:apt|apartment|suite|ste)\.?[ \t]*#?[ \t]*\d{1,5}[a-z]?\b"), 0.55),
    # PO Box 123, Postbox 53; military addresses (PSC 1234, Box 5678; APO AE 09001)
    AddressPattern(
        _ci(
            r"\b(?:p\.?[ \t]?o\.?[ \t]?box|post(?:al)?[ \t]?box|postbox|postfach|apartado)"
            r"[ \t]*\d{1,6}\b"
        ),
        0.6,
    ),
    AddressPattern(timed(r"\b(?:PSC|CMR|Unit)[ \t]+\d{3,5},?[ \t]+Box[ \t]+\d{2,5}\b"), 0.6),
    AddressPattern(timed(r"\b(?:APO|FPO|DPO)[ \t]+(?:AA|AE|AP)[ \t]+\d{5}\b"), 0.6),
    AddressPattern(timed(r"\bUSN?[SV][ \t]+[A-Z]\w+"), 0.45),
]
ADDRESS_CUE = timed(
    r"(?i)\b(?:address(?:\s+is)?|lives?\s+(?:at|on)|living\s+at|located\s+at|situated\s+at|"
    r"resid(?:es|ing|e)\s+at|moved\s+to|relocated\s+to|is\s+at|(?:send|ship|deliver|mail|post)"
    r"(?:\s+(?:it|them|this|the \w+))?\s+to)\s*[:\-]?\s*"
)
CUED_NUMBER_STREET = timed(
    r"\d{1,6}(?:[ \t]+\d{1,6})?[ \t]+(?!(?:am|pm|AM|PM)\b)"
    r"[^\W\d_][\w'’.\-]*(?:[ \t]+[^\W\d_][\w'’.\-]*){0,4}"
)
# Lines that continue an address block: unit, town, region, country and postcode.
LINE_WORD = timed(r"[\w'’().\-]+")
PARTICLES = word_set(
    "de del della di da do dos das du la le les van von der den am an im upon on sur y i"
)
# One ", Town 12345" group of an address's tail on its line; the tail is a run of them.
TAIL_GROUP = timed(r",[ \t]*[A-Z0-9][\w'’.\-]*(?:[ \t]+[A-Z0-9][\w'’.\-]*){0,3}")


def _is_address_line(line: str) -> bool:
    """A short line of capitalised words and numbers ("Suite 282", "Hungary 34796")."""
    body = line.strip().lstrip(",>?").strip()
    words = LINE_WORD.findall(body)
    if not words or len(words) > 6 or len(body) > 48 or ":" in body or "@" in body:
        return False
    if phone_strength(body) > 0:
        return False
    return all(w[0].isupper() or w[0].isdigit() or w in PARTICLES for w in words)


# A street line ("Allika 46", "20789 Allika 46") right above a unit or town line.
STREET_LINE = timed(
    rf"[ \t>?]*(?:\d{{1,6}}[ \t]+)?(?:{_W}[ \t]+){{1,4}}\d{{1,5}}[a-z]?\.?[ \t]*"
)
HOUSE_NUMBER_BEFORE = timed(r"\d{1,6}[ \t]+$")
TOWN_AND_POSTCODE = timed(r"[ \t>?]*[^\W\d_][\w'’(). \-]{1,40}[ \t]\d{3,6}[ \t]*")


def _line_at(text: str, pos: int) -> tuple[int, int]:
    start = text.rfind("\n", 0, pos) + 1
    end = text.find("\n", pos)
    return start, len(text) if end == -1 else end


# What may stand before an address at the start of its line (indents, quote marks).
_LINE_LEAD = frozenset(" \t>?")


def _extend_back(text: str, start: int) -> int:
    """Take in the house number before a street and the street line above a unit line.

    Only the indent before the address is read back to see whether the address starts its
    line: reading back to the line's start (and on to its end) from every address was
    quadratic on one long line of them."""
    number = HOUSE_NUMBER_BEFORE.search(text, max(0, start - 8), start)
    if number:
        start = number.start()
    line_start = start
    while line_start > 0 and text[line_start - 1] in _LINE_LEAD:
        line_start -= 1
    if line_start > 0 and text[line_start - 1] == "\n":
        prev_start = text.rfind("\n", 0, line_start - 1) + 1
        if STREET_LINE.fullmatch(text, prev_start, line_start - 1):
            start = (
                prev_start
                + len(text[prev_start:line_start])
                - len(text[prev_start:line_start].lstrip(" \t>?"))
            )
    return start


class _Tails:
    """Where each address of one text ends: its town/postcode tail, then the short lines
    below it.

    On one line of comma-separated addresses every address's tail runs to the end of the
    line, through all the addresses after it; reading it again from each address was
    quadratic in the line's length. The tail is a run of `TAIL_GROUP`s, each one decided by
    where it starts alone, so the end of the run from each group's start is kept: every
    group of the text is matched once, and the same spans come out.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self._run_end: dict[int, int] = {}  # start of a group -> end of the run from it
        self._block_end: dict[int, int] = {}  # end of a tail -> end of the lines below it

    def run_end(self, pos: int) -> int:
        """End of the run of `TAIL_GROUP`s from `pos` (`pos` itself: no tail there)."""
        path = []
        while pos not in self._run_end:
            path.append(pos)
            group = TAIL_GROUP.match(self.text, pos)
            if group is None:
                self._run_end[pos] = pos
                break
            pos = group.end()
        end = self._run_end[pos]
        for start in path:
            self._run_end[start] = end
        return end

    def extend(self, end: int) -> int:
        """Extend an address over its town/postcode tail and the short lines below it."""
        tail_end = self.run_end(end)
        if tail_end > end:
            end = tail_end
        elif self.text.startswith(".", end):
            end += 1
        if end not in self._block_end:
            self._block_end[end] = _lines_below(self.text, end)
        return self._block_end[end]


def _lines_below(text: str, end: int) -> int:
    """Extend an address's end over the address lines below it."""
    for _ in range(5):
        nxt = end + 1
        if text.startswith("\n\n", end):  # a blank line, then only "Country 12345"
            _, line_end = _line_at(text, end + 2)
            if TOWN_AND_POSTCODE.fullmatch(text, end + 2, line_end):
                end = line_end
            break
        if not text.startswith("\n", end):
            break
        _, line_end = _line_at(text, nxt)
        if not _is_address_line(text[nxt:line_end]):
            break
        end = line_end
    return end


def _windowed(ap: AddressPattern, text: str) -> Iterator[re.Match[str]]:
    """Matches of `ap.pattern`, searched only near its trigger's hits."""
    if ap.trigger is None:
        yield from ap.pattern.finditer(text)
        return
    seen: set[tuple[int, int]] = set()
    for hit in ap.trigger.finditer(text):
        lo, hi = max(0, hit.start() - ap.before), min(len(text), hit.end() + ap.after)
        for m in ap.pattern.finditer(text, lo, hi):
            if m.span() not in seen and m.start() <= hit.start() and m.end() >= hit.end() - 1:
                seen.add(m.span())
                yield m


class StreetAddressRecognizer(SpanRecognizer):
    """Street addresses in English and the common European forms, with their tails."""

    ENTITY = "LOCATION"

    def spans(self, text: str, artifacts: Any) -> Iterator[tuple[int, int, float]]:
        if not any(c.isdigit() for c in text):
            return
        tails = _Tails(text)
        for ap in ADDRESS_PATTERNS:
            for m in _windowed(ap, text):
                yield _extend_back(text, m.start()), tails.extend(m.end()), ap.score
        for cue in ADDRESS_CUE.finditer(text):
            street = CUED_NUMBER_STREET.match(text, cue.end())
            if street:
                yield _extend_back(text, street.start()), tails.extend(street.end()), 0.55
