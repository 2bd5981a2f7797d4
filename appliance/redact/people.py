"""People that the model is unsure of, read from the words around them.

Real user text names people by handle (`@someone`), in lower case ("ask
john", "my friend sam") and as the subject of a reporting verb ("Harper
says"). spaCy's NER, trained on edited news text, misses most of these.
The rules here use only the context words and the word lists of
`gazetteer.py` (names-dataset ranks, pycountry places, spaCy's dictionary).
The word tests here (`is_ordinary`, `is_word`, `NOT_NAMES`) are shared with
the place rules of `context.py` and the other rule modules.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from spacy.lang.en.stop_words import STOP_WORDS

from appliance.redact.budget import timed
from appliance.redact.gazetteer import CALENDAR, Gazetteer
from appliance.redact.recognizers import SpanRecognizer, word_set

# --- handles -------------------------------------------------------------------------------

# @someone, not the @ inside an e-mail address or a decorator-like `x.@y`.
HANDLE = timed(r"(?<![\w@.+\-])@([A-Za-z0-9_]{2,30})(?![\w@]|\.[A-Za-z]{2,})")


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
RELATION_CUE = timed(rf"(?i)\b(?:my|our|your|his|her|their)\s+(?:best\s+|old\s+|little\s+|"
                     rf"big\s+|new\s+)?(?:{RELATION})\s+")
# "ask john", "tell sarah", "with mike", "thanks dave": the next word if it is a known name.
VERB_CUE = timed(r"(?i)\b(?:ask|asked|asking|tell|told|telling|with|thank|thanks|thx|"
                 r"remind|reminded|email|e-mail|meet|met|invite|invited|congrats|"
                 r"congratulations|happy birthday|hbd|hi|hey|hello|dear)\s+")
NAME_WORD = timed(r"[^\W\d_][\w'’\-]*")
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


# --- the subject of a reporting verb -------------------------------------------------------

# "Harper says", "Osborne promised", "Smith told reporters": one or two capitalised words
# right before a verb of saying or of a headline's doing.
REPORTED = timed(
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
