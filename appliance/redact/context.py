"""Names and places that the model is unsure of, read from the words around them.

Real user text names people by handle (`@someone`), in lower case ("ask
john", "my friend sam") and in hashtags (`#RayWilkins`), and places by
venue or landmark after a place word ("at the Royal Court", "near Union
Glacier"). spaCy's NER, trained on edited news text, misses most of these.
The rules here use only the context words and the word lists of
`gazetteer.py` (names-dataset ranks, pycountry places, spaCy's dictionary).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from spacy.lang.en.stop_words import STOP_WORDS

from appliance.redact.gazetteer import CALENDAR, Gazetteer
from appliance.redact.places import POPULAR_NAME_RANK, abbreviations
from appliance.redact.recognizers import SpanRecognizer, make_result, word_set

# --- handles -------------------------------------------------------------------------------

# @someone, not the @ inside an e-mail address or a decorator-like `x.@y`.
HANDLE = re.compile(r"(?<![\w@.+\-])@([A-Za-z0-9_]{2,30})(?![\w@]|\.[A-Za-z]{2,})")


class HandleRecognizer(SpanRecognizer):
    """Social-media handles (`@jane_doe`): account identifiers, typed USERNAME.

    A handle names an account (a person's, a brand's or an organisation's),
    not a person by name, so it gets its own placeholder (`<USERNAME_1>`),
    as an e-mail address does; it is redacted and vaulted like any other type.
    """

    ENTITY = "USERNAME"

    def spans(self, text: str, artifacts: Any) -> Iterator[tuple[int, int, float]]:
        if "@" not in text:
            return
        for m in HANDLE.finditer(text):
            if not m.group(1).isdigit():
                yield m.start(), m.end(), 0.6


# --- lower-case and unknown names after a person cue ---------------------------------------

RELATION = (
    r"friend|friends|buddy|mate|pal|bestie|bff|boyfriend|girlfriend|bf|gf|wife|husband|"
    r"partner|fiance|fiancee|son|daughter|kid|brother|sister|bro|sis|mom|mum|mother|dad|"
    r"father|grandma|grandpa|granny|uncle|aunt|auntie|cousin|nephew|niece|boss|manager|"
    r"colleague|coworker|co-worker|neighbour|neighbor|roommate|flatmate|teacher|doctor|"
    r"dentist|lawyer|client|customer|student|tutor|coach|landlord|babysitter|nanny"
)
# "my friend sam", "our neighbour tom", "my sister's"; any word after is a name unless common.
RELATION_CUE = re.compile(rf"(?i)\b(?:my|our|your|his|her|their)\s+(?:best\s+|old\s+|little\s+|"
                          rf"big\s+|new\s+)?(?:{RELATION})\s+")
# "ask john", "tell sarah", "with mike", "thanks dave": the next word if it is a known name.
VERB_CUE = re.compile(r"(?i)\b(?:ask|asked|asking|tell|told|telling|with|thank|thanks|thx|"
                      r"remind|reminded|email|e-mail|meet|met|invite|invited|congrats|"
                      r"congratulations|happy birthday|hbd|hi|hey|hello|dear)\s+")
NAME_WORD = re.compile(r"[^\W\d_][\w'’\-]*")
NOT_NAMES = word_set(
    "i me you he she it we they him her them us my your his its our their mine yours "
    "this that these those who whom what which everyone everybody someone somebody anyone "
    "anybody nobody all both each guys girls boys folks people family team lol haha omg "
    "mr mrs ms dr sir madam god jesus"
)


INFLECTIONS = ("s", "es", "ed", "d", "ing", "ly")


def is_ordinary(low: str, g: Gazetteer) -> bool:
    """A stop word, verb, adjective or adverb, or an inflection of one ("lets", "reading").

    Unlike `is_word` this leaves out nouns: WordNet's noun list (part of
    `common`) also holds many cities and surnames ("calgary", "wilkins").
    """
    if low in g.common and low not in g.nouns:
        return True
    return any(low.endswith(end) and low[: -len(end)] in g.common for end in INFLECTIONS
               if len(low) > len(end) + 2)


def is_word(low: str, g: Gazetteer) -> bool:
    """A common English word or place name, inflected forms included ("rolls", "lives")."""
    if low in g.common or low in g.places:
        return True
    return any(low.endswith(end) and low[: -len(end)] in g.common for end in INFLECTIONS
               if len(low) > len(end) + 2)


class CuedNameRecognizer(SpanRecognizer):
    """Names in any case after "my friend", "ask", "tell", "with", "thanks" and the like.

    After a relation ("my friend", "my boss") the next one or two words are a
    name unless they are common words; after a verb cue only a known first
    name that is not also a common word counts, so "with water" stays.
    """

    ENTITY = "PERSON"

    def __init__(self, gazetteer: Gazetteer) -> None:
        super().__init__()
        self.g = gazetteer

    def _name_like(self, word: str, *, known: bool) -> bool:
        low = word.lower()
        if low in NOT_NAMES or low in CALENDAR or len(low) < 2 or is_word(low, self.g):
            return False
        return not known or low in self.g.first

    def _after(self, text: str, pos: int, *, known: bool) -> tuple[int, int] | None:
        first = NAME_WORD.match(text, pos)
        if not first or not self._name_like(first.group(), known=known):
            return None
        end = first.end()
        second = NAME_WORD.match(text, end + 1) if text[end:end + 1] == " " else None
        if second and second.group().lower() in self.g.last \
                and not is_word(second.group().lower(), self.g):
            end = second.end()
        return first.start(), end

    def spans(self, text: str, artifacts: Any) -> Iterator[tuple[int, int, float]]:
        for cue, known, score in ((RELATION_CUE, False, 0.6), (VERB_CUE, True, 0.5)):
            for m in cue.finditer(text):
                found = self._after(text, m.end(), known=known)
                if found:
                    yield found[0], found[1], score


# --- hashtags ------------------------------------------------------------------------------

# A one-word hashtag is a city when the city is this big ("#sochi", not "#reading").
HASHTAG_CITY_POPULATION = 100_000
HASHTAG = re.compile(r"(?<![\w#&])#([A-Za-z][A-Za-z0-9_]{1,40})\b")
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
        """Presidio entry point (two entity types)."""
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

PLACE_CUE = re.compile(r"(?i)\b(?:at|in|near|from|outside|inside|around|towards?|visiting|"
                       r"arrived in|landed in|live in|lives in|living in|based in|born in|"
                       r"moved to|move to|fly to|flying to|trip to|going to|went to|"
                       r"back to|heading to|welcome to)\s+(?:the\s+)?")
CAP_WORD = re.compile(r"[A-Z][A-Za-z'’]*(?:-[A-Z][A-Za-z'’]*)*(?![\w\-])")
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
POSSESSIVE = re.compile(r" ?['’]s ")
# Before a facility named with ordinary words these make it any one of its kind, not a
# landmark: "the nearest Gas Station", "any Fire Station", "a local Swimming Pool".
GENERIC_BEFORE = word_set("nearest closest nearby local any another every each some no")
_WORD_BEFORE = re.compile(r"([A-Za-z]+)\W*$")


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
LANDMARK = re.compile(r"(?<![\w@#])((?:[A-Z][\w'’\-]*[ ]){1,3})(?i:(" +
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

CUE_BEFORE = re.compile(PLACE_CUE.pattern + r"$")
CUE_WINDOW = 40  # characters before a word that can hold a place cue ("arrived in the ")


def place_cue_before(text: str, start: int) -> bool:
    """Whether a place word ("in", "at the", "moved to", ...) ends right before `start`."""
    return CUE_BEFORE.search(text, max(0, start - CUE_WINDOW), start) is not None
ORG_EDGE = re.compile(r"^(?:[Tt]he\s+)?(.*?)[\W_]*$", re.S)


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


# --- the subject of a reporting verb -------------------------------------------------------

# "Harper says", "Osborne promised", "Smith told reporters": one or two capitalised words
# right before a verb of saying or of a headline's doing.
REPORTED = re.compile(
    r"(?<![\w@#'’])((?:[A-Z][a-z][\w'’\-]*[ ]){1,2})(?:says|said|tells|told|warns|warned|urges|"
    r"urged|admits|admitted|denies|denied|claims|claimed|insists|insisted|announces|announced|"
    r"accuses|accused|promises|promised|vows|vowed|pledges|pledged|slams|praises|defends|"
    r"begins|heads|plays|resigns|resigned|responds|replies|replied|confirms|confirmed|reveals|"
    r"revealed|rejects|rejected|asks|asked|wants|explains|explained)\b")


BIG_CITY_POPULATION = 1_000_000  # as places.NAME_CITY_POPULATION: "Sydney says" is a city


class ReportedSpeakerRecognizer(SpanRecognizer):
    """A surname or name right before "says", "told", "warns", "promised" and the like.

    Only words that are no ordinary English word, calendar word or place
    count; a dictionary noun only when the name lists know it ("Harper says";
    not "Police say", "Report says").
    """

    ENTITY = "PERSON"

    def __init__(self, gazetteer: Gazetteer) -> None:
        super().__init__()
        self.g = gazetteer

    def _name_word(self, word: str) -> bool:
        low = word.lower()
        if len(low) < 3 or low in NOT_NAMES or low in CALENDAR or is_ordinary(low, self.g) \
                or low in self.g.places or low in STOP_WORDS:
            return False
        if low in self.g.first or low in self.g.last:  # a known name, unless a big city
            return self.g.cities.get(low, 0) < BIG_CITY_POPULATION
        return low not in self.g.nouns and low not in self.g.common and low not in self.g.cities

    def spans(self, text: str, artifacts: Any) -> Iterator[tuple[int, int, float]]:
        for m in REPORTED.finditer(text):
            words = m.group(1).split()
            if all(self._name_word(w) for w in words):
                yield m.start(1), m.start(1) + len(m.group(1).rstrip()), 0.5
