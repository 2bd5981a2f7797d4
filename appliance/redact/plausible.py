"""Which of spaCy's NER hits can be a name or a place (the rest are dropped before merging).

spaCy's English NER calls many capitalised words of chat a person or a
place. A hit is dropped when it has no cased letter (emoji, punctuation),
a letter drawn out three times ("Loooool"), a piece of a web address (a
place), a snake_case identifier in lower case ("self.mark_dirty", a place
to spaCy after a statement), or, for a person: code characters, only
dictionary words that no
name list knows ("Discipline"), a form's label before its colon ("Qty:
5 boxes", `FIELD_LABELS`), a phrase of another language ("Queria
muito"), all lower case in a text with capitals ("goes"), a chat word
split in two as tokenised text writes it ("Wan na" of "wanna"), or one
dictionary word opening a sentence that goes on in lower case ("Glass
panels were damaged", "Worth staying up for") unless the name lists rank it
within NAME_RANK ("Harper begins", "Hogan says").
"""

from __future__ import annotations

from typing import Any

from appliance.redact.budget import timed
from appliance.redact.foreign import foreign_phrase
from appliance.redact.gazetteer import INFLECTED_LAST_RANK, SENTENCE_END, split_chat_word
from appliance.redact.names import field_label

# NER output that is never a person's name: code, key=value runs, handles, paths.
NOT_A_NAME = timed(r"[=_@/\\{}<>\[\]#$%^*|~+\d]")
# A snake_case identifier of code in lower case, attributes too ("self.mark_dirty",
# "cfg.max_len"): spaCy calls some a place or an organisation, no name is written so.
SNAKE_CASE = timed(r"[a-z][a-z0-9]*(?:[._][a-z0-9]+)*_[a-z0-9]+(?:[._][a-z0-9]+)*")
# A web address or a piece of one ("tps://t.co/x", "example.com/a") in an NER hit.
URL_PIECE = timed(r"://|\w\.\w+/")
# A lower-case letter three times in a row: drawn-out chat words ("Loooool"), not names.
ELONGATED = timed(r"([a-z])\1\1")
LETTERS = timed(r"[^\W\d_]+")
# A dictionary word opening a sentence is still a name when a name list ranks it this high
# (the rank at which an inflected verb that is also a surname stays a name: "Manning").
NAME_RANK = INFLECTED_LAST_RANK
_BEFORE = timed(r"(\S+)\s*$")
_NEXT = timed(r"\s*(\S+)")
# "Mr. Spears": a title's full stop does not end a sentence.
_TITLE = timed(r"(?i)\b(?:mr|mrs|ms|mx|dr|prof|st|sr|jr|gen|col|capt|sgt|rev|hon|gov|sen|"
               r"rep|pres)\s*\.\s*$")


# What follows a field's label at the start of a line: "DOB: ...", "Email : ...".
_LABEL_COLON = timed(r"[ \t]*:")


def before_next_label(whole: str, start: int, end: int) -> int:
    """The end of an NER hit without the next line's field label it ran into: spaCy reads
    "Jane Roe\nDOB" of "Name: Jane Roe\nDOB: 02/01/1980" as one name, and the form lost
    its label. Only a hit whose last line is followed by a colon is cut, at that line's
    break; a name that runs on over lines ("Bob Marley\nJimi Hendrix") is left whole. A
    hit made only of the label ends where it starts (nothing is left of it)."""
    brk = whole.rfind("\n", start, end)
    if brk < 0 or not _LABEL_COLON.match(whole, end):
        return end
    return start + len(whole[start:brk].rstrip())


def plausible(whole: str, start: int, end: int, entity_type: str, names: Any) -> bool:
    """Whether the NER hit `whole[start:end]` of `entity_type` can be a name or place.

    `names` is the PersonNameRecognizer (its word lists), or None when the
    lists are switched off.
    """
    text = whole[start:end]
    if not any(c.isupper() or c.islower() for c in text) or ELONGATED.search(text):
        return False
    if entity_type != "PERSON":
        if SNAKE_CASE.fullmatch(text):
            return False
        if entity_type == "LOCATION" and names is not None:
            from appliance.redact.context import generic_facility

            if generic_facility(whole, start, end, names.g):
                return False
        return not URL_PIECE.search(text)
    if NOT_A_NAME.search(text) or field_label(whole, start, end):
        return False
    if not any(c.isupper() for c in text) and any(c.isupper() for c in whole):
        return False
    words = LETTERS.findall(text)
    if names is None or not words:
        return True
    g = names.g
    # WordNet's noun list holds famous people ("putin", "perry", "brooks"): a dictionary
    # word that a name list also knows is a name when spaCy says so.
    common = names.all_common(words) and not any(
        w.lower() in g.first or w.lower() in g.last for w in words)
    return not (common or foreign_phrase(text, g.foreign, g.first, g.last, whole)
                or splits_chat_word(whole, end, words)
                or sentence_opener(whole, start, end, words, g))


def splits_chat_word(whole: str, end: int, words: list[str]) -> bool:
    """Whether a would-be name holds or ends the first half of a split chat word ("Wan na")."""
    tail = _NEXT.match(whole, end)
    after = [tail.group(1)] if tail else []
    pairs = zip(words, words[1:] + after, strict=False)  # no word after the last one: done
    return any(split_chat_word(a, b) for a, b in pairs)


def _dictionary_word(low: str, g: Any) -> bool:
    """A common English word, or the plural of one that no name list knows ("Dads")."""
    if low in g.common:
        return True
    return (low.endswith("s") and not low.endswith("ss") and low[:-1] in g.common
            and low not in g.first and low not in g.last)


def sentence_opener(whole: str, start: int, end: int, words: list[str], g: Any) -> bool:
    """One dictionary word at the start of a sentence that goes on in lower case.

    "Glass panels were damaged", "Worth staying up for", "Dads are ...": the
    capital is the sentence's. A name the lists rank within NAME_RANK stays
    ("Harper begins his tour", "Osborne promised").
    """
    if len(words) != 1:
        return False
    low = words[0].lower()
    if not _dictionary_word(low, g) or min(g.first.get(low, 10**6),
                                            g.last.get(low, 10**6)) <= NAME_RANK:
        return False
    nxt = _NEXT.match(whole, end)
    if not nxt or not nxt.group(1)[:1].islower():
        return False
    before = whole[max(0, start - 40):start]
    prev = _BEFORE.search(before)
    if prev is None:
        return start == 0 or not before.strip()
    return not _TITLE.search(before) and (prev.group(1) in SENTENCE_END
                                          or prev.group(1)[-1:] in '.!?:"“”')
