"""Nationality words ("Israeli", "South Korean", "Irish"), typed NRP.

A nationality points at a country as surely as the country's own name
does, so it is redacted; it is not a place, so its type is Presidio's NRP
(nationality, religious or political group: `<NRP_1>`; LOCATION until the
sixth pass of issue 15). spaCy tags them NORP, together with religions and
parties ("Muslims", "Tories"), which are left alone: only a NORP hit whose
last word is a country's stem plus a demonym ending ("Kenyans") or the name
of a language ("Irish", "French", "Dutch", "Chinese") counts. A cuisine, a
dish, an event or a language is no nationality: not before "food",
"restaurant", "stew", "fries", "language", ... ("Chinese food", "Irish
stew"), nor before a capitalised event word ("the French Open"), nor as
the object of "learn", "speak", "into", "eat", ... ("Translate it into
French", "learning Norwegian"). In a text written
in capitals, where spaCy tags none, words of four or more capitals with a
demonym ending count too ("REACHING RUSSIAN AIR SPACE").
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from spacy.lang.en.stop_words import STOP_WORDS

from appliance.redact.budget import timed
from appliance.redact.gazetteer import Gazetteer
from appliance.redact.recognizers import SpanRecognizer, word_set

# Endings that turn a country's name into its people's ("Israel-i", "Austral-ian").
DEMONYM_ENDINGS = ("ian", "an", "ese", "ish", "is", "i", "ic", "ch", "n")
DEMONYM_STEM = 4  # letters a stem must share with the country's name
LETTER_RUN = timed(r"[^\W\d_]+")
# A word of four or more capitals, not part of a handle or hashtag.
CAPS_WORD = timed(r"(?<![\w@#])[A-Z]{4,}(?![\w@])")
# After a nationality word these make it a cuisine or a language ("Chinese food", "French lessons").
CUISINE_OR_LANGUAGE = word_set(
    "food foods cuisine dish dishes meal meals restaurant restaurants cooking recipe recipes "
    "takeaway takeout language languages translation translations lesson lessons class classes "
    "course courses word words phrase phrases accent grammar dictionary subtitles "
    # dishes and drinks named after a country ("Irish stew", "French fries", "Greek yogurt")
    "stew fries toast pastry pastries yogurt yoghurt cheese bread breakfast dressing omelette "
    "omelet sausage sausages waffle waffles delight coffee tea wine beer whiskey whisky"
)
# Capitalised after a nationality word, these make it an event's name ("the French Open",
# "the Irish Cup", "the Italian Grand Prix").
EVENT_WORDS = frozenset({"Open", "Cup", "Grand", "Championship", "Championships", "Masters",
                         "Derby", "Rally", "Marathon", "Classic"})
# Before a nationality word with no noun after it, these make it a language or a cuisine.
LANGUAGE_VERB = word_set(
    "in into learn learning learnt learned speak speaks speaking spoke spoken translate "
    "translated translating study studying teach teaching fluent eat eating order"
)


def country_prefixes(g: Gazetteer) -> frozenset[str]:
    """Prefixes of DEMONYM_STEM or more letters of the words that name one country."""
    return frozenset(w[:i] for w in g.country_words for i in range(DEMONYM_STEM, len(w) + 1))


def is_demonym(word: str, prefixes: frozenset[str]) -> bool:
    """Whether `word` is a country name's stem plus a demonym ending ("Kenyans", "Thai")."""
    low = word.lower()
    if low.endswith("s") and not low.endswith("ss"):
        low = low[:-1]
    if low in prefixes:
        return True
    return any(low.endswith(end) and low[:-len(end)] in prefixes for end in DEMONYM_ENDINGS
               if len(low) - len(end) >= DEMONYM_STEM)


def language_words() -> frozenset[str]:
    """The last word of each ISO 639-1 language's name in pycountry, without its parenthesis.

    Most irregular nationality words are languages' names too ("Irish",
    "French", "Dutch", "Greek" of "Modern Greek (1453-)"), and so is "Chinese",
    whose country word "china" names too many of pycountry's countries to be a stem.
    """
    import pycountry

    out = set()
    for lang in pycountry.languages:
        if hasattr(lang, "alpha_2"):
            words = LETTER_RUN.findall(lang.name.split("(")[0])
            if words:
                out.add(words[-1].lower())
    return frozenset(out)


def cuisine_or_language(text: str, start: int, end: int) -> bool:
    """Whether the nationality word at text[start:end] names a cuisine, a dish, a language
    or (before a capitalised event word: "the French Open") an event here."""
    after = LETTER_RUN.search(text, end)
    nxt = after.group().lower() if after and not text[end:after.start()].strip() else ""
    if nxt in CUISINE_OR_LANGUAGE or (after and nxt and after.group() in EVENT_WORDS):
        return True
    before = LETTER_RUN.findall(text[max(0, start - 30):start])
    return bool(before) and before[-1].lower() in LANGUAGE_VERB and (not nxt or nxt in STOP_WORDS)


class DemonymRecognizer(SpanRecognizer):
    """Nationality words that spaCy tags NORP, typed NRP (see the module's docstring)."""

    ENTITY = "NRP"

    def __init__(self, gazetteer: Gazetteer, entity: str = "NRP") -> None:
        # LOCATION for a policy that lists LOCATION but not NRP (RedactionSettings).
        self.ENTITY = entity
        super().__init__([entity])
        self.g = gazetteer
        self.prefixes = country_prefixes(gazetteer)
        self.languages = language_words()

    def spans(self, text: str, artifacts: Any) -> Iterator[tuple[int, int, float]]:
        if artifacts is None:
            return
        for ent in artifacts.entities:
            if ent.label_ != "NRP":
                continue
            words = LETTER_RUN.findall(ent.text)
            if not words or not words[-1][:1].isupper():
                continue
            last = words[-1]
            nationality = is_demonym(last, self.prefixes) or last.lower() in self.languages
            if nationality and not cuisine_or_language(text, ent.start_char, ent.end_char):
                yield ent.start_char, ent.end_char, 0.6
        yield from self._in_capitals(text)

    def _in_capitals(self, text: str) -> Iterator[tuple[int, int, float]]:
        """In a text written in capitals, where spaCy tags none: "REACHING RUSSIAN AIR SPACE"."""
        alpha = [c for c in text if c.isalpha()]
        if not alpha or sum(c.isupper() for c in alpha) * 2 <= len(alpha):
            return
        for m in CAPS_WORD.finditer(text):
            low = m.group().lower()
            if low not in self.g.countries and low not in self.g.places \
                    and is_demonym(m.group(), self.prefixes):
                yield m.start(), m.end(), 0.6
