"""Function words of other languages: a capitalised run that holds them is a phrase, not a name.

spaCy's English NER reads capitalised Spanish, Portuguese, French, German,
Italian or Dutch words as a person ("Queria muito", "Ya tenemos", "Ich bin
ein ..."). The stop-word lists that ship with spaCy for those languages name
the function words; words that are also English words or name particles
("de", "van", "el") are left out.
"""

from __future__ import annotations

import functools
import importlib
import re

LANGUAGES = ("es", "pt", "fr", "de", "it", "nl")
# A single function word still counts as a name when it is this popular as one ("Ali", "Sean").
NAME_RANK = 100
WORDS = re.compile(r"[^\W\d_]+")


def foreign_function_words(common: frozenset[str], particles: frozenset[str]) -> frozenset[str]:
    """Other languages' stop words that are no English word and no name particle."""
    from spacy.lang.en.stop_words import STOP_WORDS

    out: set[str] = set()
    for lang in LANGUAGES:
        out.update(importlib.import_module(f"spacy.lang.{lang}.stop_words").STOP_WORDS)
    return frozenset(w for w in out if w.isalpha() and w not in STOP_WORDS
                     and w not in common and w not in particles)


@functools.cache
def _any_function_words() -> frozenset[str]:
    """Other languages' stop words, English look-alikes ("con", "e", "y") included."""
    from spacy.lang.en.stop_words import STOP_WORDS

    from appliance.redact.gazetteer import NAME_PARTICLES

    out: set[str] = set()
    for lang in LANGUAGES:
        out.update(importlib.import_module(f"spacy.lang.{lang}.stop_words").STOP_WORDS)
    return frozenset(w for w in out if w.isalpha() and w not in STOP_WORDS
                     and w not in NAME_PARTICLES)


def foreign_phrase(span: str, foreign: frozenset[str], first: dict[str, int],
                   last: dict[str, int], context: str = "") -> bool:
    """Whether a would-be name is a phrase of another language.

    It is when a word after the first is a lower-case function word ("Queria
    muito", "el Atlético y así lo veo"), or when at least half its words are
    function words that no name list knows ("Não vejo"); a single function
    word that is no popular name ("Por"; not "Ali", "Sara") only when the
    text around it (`context`) holds another ("Por primera vez"; not "Ella
    is the cutest baby").
    """
    words = WORDS.findall(span)
    if not words:
        return False
    lows = [w.lower() for w in words]

    def function_word(low: str) -> bool:
        return low in foreign and min(first.get(low, 10**6), last.get(low, 10**6)) > NAME_RANK

    later = list(zip(words[1:], lows[1:], strict=True))
    if any(w.islower() and function_word(low) for w, low in later):
        return True
    if len(words) == 1:
        if not function_word(lows[0]):
            return False
        others = (w.lower() for w in WORDS.findall(context))
        return sum(map(function_word, others)) >= 2
    # In a text of another language, a lower-case function word that English also has
    # ("con", "e", "y") inside the run: "Ya comenzamos con", "Importante causa e iniciativa".
    loose = _any_function_words()
    if any(w.islower() and low in loose for w, low in later):
        others = (w.lower() for w in WORDS.findall(context))
        return sum(map(function_word, others)) >= 2
    return 2 * sum(low in foreign and low not in first and low not in last
                   for low in lows) >= len(words)
