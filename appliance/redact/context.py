"""Places that the model is unsure of, read from the words around them.

Real user text names places in hashtags (`#colorado`, `#TeamAustralia`; a
hashtag may also be a full name, `#RayWilkins`) and by venue or landmark
after a place word ("at the Royal Court", "near Union Glacier"), and spaCy
types many venues as organisations ("at Guildhall"). spaCy's NER, trained on
edited news text, misses most of these. The rules here use only the context
words and the word lists of `gazetteer.py` (names-dataset ranks, pycountry
places, spaCy's dictionary). The people read from context (handles, cued
names, reported speakers) and the shared word tests are in `people.py`,
re-exported here.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from spacy.lang.en.stop_words import STOP_WORDS

from appliance.redact.budget import check, stage, timed
from appliance.redact.gazetteer import CALENDAR, Gazetteer
from appliance.redact.people import NAME_WORD, NOT_NAMES, is_ordinary, is_word
from appliance.redact.people import CuedNameRecognizer as CuedNameRecognizer
from appliance.redact.people import HandleRecognizer as HandleRecognizer
from appliance.redact.people import ReportedSpeakerRecognizer as ReportedSpeakerRecognizer
from appliance.redact.places import POPULAR_NAME_RANK, abbreviations
from appliance.redact.recognizers import SpanRecognizer, make_result, word_set

# --- hashtags ------------------------------------------------------------------------------

# A one-word hashtag is a city when the city is this big ("#sochi", not "#reading").
HASHTAG_CITY_POPULATION = 100_000
HASHTAG = timed(r"(?<![\w#&])#([A-Za-z][A-Za-z0-9_]{1,40})\b")
CAMEL = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])")


class HashtagRecognizer(SpanRecognizer):
    """Hashtags that are or contain a place or are a full name.

    A place: the whole tag (`#Iran`, `#colorado`, `#UK`), or one to three of
    its CamelCase parts naming a country, region or big city
    (`#PoweringAustralia`, `#TVGuideCanada`). A full name: `#RayWilkins`.
    """

    ENTITY = "LOCATION"

    def __init__(self, gazetteer: Gazetteer) -> None:
        super().__init__(["LOCATION", "PERSON"])
        self.g = gazetteer
        self.abbreviations = abbreviations(gazetteer)[1]

    def _place(self, name: str) -> bool:
        return name in self.g.places or self.g.cities.get(name, 0) >= HASHTAG_CITY_POPULATION

    def _unknown_town(self, low: str) -> bool:
        """A GeoNames city or town of 5+ letters that no word or name list knows (`#cheadle`)."""
        return (low.isalpha() and len(low) >= 5 and (low in self.g.towns or low in self.g.cities)
                and low not in self.g.common and low not in self.g.first
                and low not in self.g.last)

    def _cued_town(self, text: str, start: int, tag: str) -> bool:
        """Any GeoNames city or town of 4+ letters right after a place word ("at #Cannes2013")."""
        low = tag.lower()
        return (len(low) >= 4 and low.isalpha() and (low in self.g.cities or low in self.g.towns)
                and place_cue_before(text, start))

    def _has_place_part(self, tag: str) -> bool:
        """Whether one to three CamelCase parts of the tag name a place ("TeamAustralia")."""
        parts = CAMEL.findall(tag)
        if len(parts) < 2:
            return False
        for n in (3, 2, 1):
            for i in range(len(parts) - n + 1):
                window = parts[i:i + n]
                phrase = " ".join(w.lower() for w in window)
                if window[0][:1].isupper() and len(phrase) >= 4 and self._place(phrase) \
                        and (n > 1 or not is_ordinary(phrase, self.g)) \
                        and (n > 1 or phrase in self.g.places or phrase not in self.g.nouns):
                    return True
        return False

    def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[Any]:
        """Presidio entry point (two entity types), under the prompt's time budget."""
        with stage(str(getattr(self, "name", ""))):
            check("the recogniser")
            return self._hashtags(text)

    def _hashtags(self, text: str) -> list[Any]:
        out: list[Any] = []
        if "#" not in text:
            return out
        for m in HASHTAG.finditer(text):
            tag = m.group(1)
            # a year or number after a place of four or more letters: #Cannes2013, #Cotopaxi2014
            core = tag.rstrip("0123456789")
            if core != tag and len(core) >= 4 and core.isalpha():
                tag = core
            words = [w.lower() for w in CAMEL.findall(tag)]
            joined = " ".join(words)
            if len(tag) == 2 and tag not in self.abbreviations:
                continue
            if tag.lower() in self.g.places or (len(words) > 1 and joined in self.g.places) \
                    or self.g.cities.get(tag.lower(), 0) >= HASHTAG_CITY_POPULATION \
                    or (len(words) > 1 and joined in self.g.cities) \
                    or tag in self.abbreviations or self._has_place_part(tag) \
                    or self._unknown_town(tag.lower()) or self._cued_town(text, m.start(), tag):
                out.append(make_result(self, "LOCATION", m.start(), m.end(), 0.6))
            elif len(words) == 2 and words[0] in self.g.first and words[1] in self.g.last \
                    and not any(is_ordinary(w, self.g) or len(w) < 3 for w in words):
                out.append(make_result(self, "PERSON", m.start(), m.end(), 0.6))
        return out


# --- venues and landmarks after a place word -----------------------------------------------

PLACE_CUE = timed(r"(?i)\b(?:at|in|near|from|outside|inside|around|towards?|visiting|"
                  r"arrived in|landed in|live in|lives in|living in|based in|born in|"
                  r"moved to|move to|fly to|flying to|trip to|going to|went to|"
                  r"back to|heading to|welcome to)\s+(?:the\s+)?")
CAP_WORD = timed(r"[A-Z][A-Za-z'’]*(?:-[A-Z][A-Za-z'’]*)*(?![\w\-])")
VENUE_WORDS = word_set(
    "arena stadium park hospital station airport museum gallery hall theatre theater cinema "
    "church cathedral abbey castle palace tower bridge square street st road rd avenue ave "
    "lane centre center mall market pub bar cafe restaurant hotel inn club college university "
    "school library zoo garden gardens beach bay harbour harbor port pier island lake river "
    "mountain mount hill valley forest glacier falls canyon village town city county district "
    "province state region coast sea ocean gulf peninsula desert strait isle isles islands "
    "house"
)


# Venue words that name a place rather than an organisation ("Castle", not "University").
LANDMARK_WORDS = VENUE_WORDS - word_set("state city club college university school bar pub "
                                        "restaurant hotel inn cafe cinema county district "
                                        "province region town village")
POSSESSIVE = timed(r" ?['’]s ")
# Before a facility named with ordinary words these make it any one of its kind, not a
# landmark: "the nearest Gas Station", "any Fire Station", "a local Swimming Pool".
GENERIC_BEFORE = word_set("nearest closest nearby local any another every each some no")
_WORD_BEFORE = timed(r"([A-Za-z]+)\W*$")


def generic_facility(text: str, start: int, end: int, g: Gazetteer) -> bool:
    """Whether text[start:end] (dictionary words ending in a venue word: "Gas Station")
    follows a word that makes it any facility of its kind ("the nearest Gas Station")."""
    words = re.findall(r"[A-Za-z]+", text[start:end])
    if words and words[0].lower() in ("a", "an", "the"):
        words = words[1:]
    if len(words) < 2 or words[-1].lower() not in VENUE_WORDS \
            or not all(w.lower() in g.common for w in words):
        return False  # "any detroit to ..." is a place
    before = _WORD_BEFORE.search(text, max(0, start - 30), start)
    return before is not None and before.group(1).lower() in GENERIC_BEFORE
LANDMARK = timed(r"(?<![\w@#])((?:[A-Z][\w'’\-]*[ ]){1,3})(?i:(" +
                 "|".join(sorted(LANDMARK_WORDS)) + r"))\b")


class VenueRecognizer(SpanRecognizer):
    """Capitalised names after a place word that no word list calls common, and landmarks.

    "at the Royal Sussex County Hospital", "near Union Glacier", "in Geelong":
    a run of capitalised words after "at", "in", "near", "from", ... is a
    place when it ends in a venue word, or when none of its words is a common
    English word, a calendar word or a person's first name.
    """

    ENTITY = "LOCATION"

    def __init__(self, gazetteer: Gazetteer) -> None:
        super().__init__()
        self.g = gazetteer

    def _run(self, text: str, pos: int) -> list[re.Match[str]]:
        run: list[re.Match[str]] = []
        while len(run) < 5:
            w = CAP_WORD.match(text, pos)
            if not w:
                break
            run.append(w)
            nxt = w.end()
            if text[nxt:nxt + 1] != " ":
                break
            pos = nxt + 1
            if text[pos:pos + 3] == "of " and len(run) >= 1:
                of_next = CAP_WORD.match(text, pos + 3)
                if of_next:
                    pos += 3
        return run

    def _after_possessive(self, text: str, end: int) -> Iterator[tuple[int, int, float]]:
        """A venue after a possessive place ("at London 's Royal Free Hospital")."""
        poss = POSSESSIVE.match(text, end)
        if poss:
            run = self._run(text, poss.end())
            if len(run) > 1 and run[-1].group().lower() in VENUE_WORDS:
                yield run[0].start(), run[-1].end(), 0.6

    def _plain(self, low: str) -> bool:
        """An ordinary word that cannot name a landmark: not a noun that is also a verb or
        adjective ("Wall Street", "Gas Hall") unless it is a popular first name ("Jack Hill")."""
        g = self.g
        return is_ordinary(low, g) and (low not in g.all_nouns
                                        or g.first.get(low, 10**6) <= POPULAR_NAME_RANK)

    def _landmarks(self, text: str) -> Iterator[tuple[int, int, float]]:
        """Capitalised names ending in a landmark word, with no cue ("Dunluce Castle")."""
        for m in LANDMARK.finditer(text):
            words = m.group(1).split()
            while words and (words[0].lower() in NOT_NAMES or words[0].lower() in STOP_WORDS):
                words = words[1:]
            lows = [w.lower() for w in words]
            if not words or any(w in STOP_WORDS or w in CALENDAR for w in lows) \
                    or all(self._plain(w) for w in lows):
                continue
            if words[-1].endswith(("'s", "’s")) and m.group(2).islower():
                continue  # someone's house or garden: "Jill's house"
            start = m.start(1) + m.group(1).index(words[0])
            if generic_facility(text, start, m.end(), self.g):
                continue
            yield start, m.end(), 0.5

    def spans(self, text: str, artifacts: Any) -> Iterator[tuple[int, int, float]]:
        yield from self._landmarks(text)
        for cue in PLACE_CUE.finditer(text):
            run = self._run(text, cue.end())
            if not run:
                continue
            yield from self._after_possessive(text, run[-1].end())
            words = [w.group().lower() for w in run]
            if words[-1] in VENUE_WORDS and len(words) > 1:
                yield run[0].start(), run[-1].end(), 0.6
                continue
            if any(is_word(w, self.g) or w in CALENDAR or w in NOT_NAMES for w in words):
                continue
            if any(w.isupper() for w in (m.group() for m in run)) and len(words) == 1:
                continue  # an acronym alone ("in US-led", "at BBC") is more often not a place
            if len(words) == 1 and (words[0] in self.g.first or len(words[0]) < 3):
                continue
            yield run[0].start(), run[-1].end(), 0.5


# --- organisations where the text says place -----------------------------------------------

CUE_BEFORE = timed(PLACE_CUE.pattern + r"$")
CUE_WINDOW = 40  # characters before a word that can hold a place cue ("arrived in the ")


def place_cue_before(text: str, start: int) -> bool:
    """Whether a place word ("in", "at the", "moved to", ...) ends right before `start`."""
    return CUE_BEFORE.search(text, max(0, start - CUE_WINDOW), start) is not None
ORG_EDGE = timed(r"^(?:[Tt]he\s+)?(.*?)[\W_]*$", re.S)


class OrgAsPlaceRecognizer(SpanRecognizer):
    """spaCy ORGANIZATION hits right after a place word are places ("at Guildhall").

    "a seat in Parliament", "outside the Capitol", "at the o2 Arena": spaCy
    often types venues and institutions as organisations, and where the text
    says place they name where someone is. A run of ordinary words ("in Live
    Action") is left alone.
    """

    ENTITY = "LOCATION"

    def __init__(self, gazetteer: Gazetteer) -> None:
        super().__init__()
        self.g = gazetteer

    def spans(self, text: str, artifacts: Any) -> Iterator[tuple[int, int, float]]:
        if artifacts is None:
            return
        for ent in artifacts.entities:
            if ent.label_ != "ORGANIZATION" or not place_cue_before(text, ent.start_char):
                continue
            m = ORG_EDGE.match(ent.text)
            core = m.group(1) if m else ""
            words = [w.lower() for w in NAME_WORD.findall(core)]
            if not words or all(is_ordinary(w, self.g) or w in CALENDAR for w in words):
                continue
            start = ent.start_char + (m.start(1) if m else 0)
            yield start, start + len(core), 0.5
