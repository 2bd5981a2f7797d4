"""Names and places in a list with one that was found ("Lismore , Ballina , Clarence & Tweed").

A run of capitalised words joined by ",", "&", "and" or "/" to a PERSON or
LOCATION hit is of the same kind when its words could be a name: not
ordinary English words (stop words, verbs, adjectives, adverbs), calendar
words or chat words. A person's word that is also a common word must be a
popular name (rank <= 300: "Josh", not "Coffee"); a place's words must be in
no list of common words or first names ("Ballarat & Wodonga" after "Geelong"),
unless they name a GeoNames city or town ("Avon" after "Ilminster ,").
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from appliance.redact.budget import timed
from appliance.redact.context import NOT_NAMES, is_ordinary, is_word
from appliance.redact.gazetteer import CALENDAR, Gazetteer
from appliance.redact.places import POPULAR_NAME_RANK

JOINER = r"(?:[ ]?,[ ]?|[ ]&[ ]|[ ]and[ ]|[ ]?/[ ]?)"
CAP_RUN = r"[A-Z][a-z][\w'’\-]*(?:[ ][A-Z][a-z][\w'’\-]*){0,2}"
AFTER = timed(rf"^{JOINER}({CAP_RUN})(?![\w'’\-])")
BEFORE = timed(rf"(?<![\w'’\-@#])({CAP_RUN}){JOINER}$")


def _fits(words: list[str], entity: str, g: Gazetteer) -> bool:
    if entity == "LOCATION" and _listed_place(words, g):
        return True
    for word in words:
        low = word.lower()
        if low in NOT_NAMES or low in CALENDAR or is_ordinary(low, g) or len(low) < 3:
            return False
        popular = min(g.first.get(low, 10**6), g.last.get(low, 10**6)) <= POPULAR_NAME_RANK
        if entity == "PERSON" and not popular and is_word(low, g):
            return False
        if entity == "LOCATION" and (low in g.common or low in g.first):
            return False
    return True


def _listed_place(words: list[str], g: Gazetteer) -> bool:
    """A GeoNames city or town in a list of places, even when it is also a first name or a
    noun ("Ilminster , Avon and Somerset", "Ballina , Clarence & Tweed"); not an ordinary,
    calendar or chat word."""
    lows = [w.lower() for w in words]
    phrase = " ".join(lows)
    return (phrase in g.cities or phrase in g.towns) and not any(
        w in NOT_NAMES or w in CALENDAR or is_ordinary(w, g) or len(w) < 3 for w in lows)


def list_members(text: str, hits: Iterable[tuple[int, int, str]],
                 g: Gazetteer) -> Iterator[tuple[int, int, str]]:
    """(start, end, entity) of the list neighbours of PERSON and LOCATION hits, in chains."""
    todo = list(hits)
    taken = [(s, e) for s, e, _ in todo]
    while todo:
        start, end, entity = todo.pop()
        if entity not in ("PERSON", "LOCATION"):
            continue
        for m, base in ((AFTER.match(text[end:end + 60]), end),
                        (BEFORE.search(text[max(0, start - 60):start]), max(0, start - 60))):
            if not m:
                continue
            s, e = base + m.start(1), base + m.end(1)
            if any(a < e and s < b for a, b in taken) or not _fits(m.group(1).split(), entity, g):
                continue
            taken.append((s, e))
            todo.append((s, e, entity))
            yield s, e, entity
