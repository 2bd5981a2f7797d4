"""Word lists for the custom recognisers: first names, surnames, places, common words.

Names come from the `names-dataset` package (first and last names with their
popularity rank per country, MIT licence). Its pickles take seconds and about
a gigabyte to load, so the names that rank within `max_rank` in at least one
country are extracted once into a small gzip file in the cache dir and read
from there afterwards. Places are the country and subdivision names of
`pycountry`. Common English words (which a name list must not fire on: "Will",
"Grant", "Car") come from the spaCy model's own lemmatiser tables and stop
words, so nothing here is ever downloaded.
"""

from __future__ import annotations

import gc
import gzip
import json
import os
import pickle
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata, resources
from pathlib import Path
from typing import Any

from appliance.recognizers import SpanRecognizer, word_set

# Calendar and greeting words are capitalised in every sentence that names
# them and double as first names in many countries.
CALENDAR = word_set(
    "january february march april may june july august september october november "
    "december monday tuesday wednesday thursday friday saturday sunday today tomorrow "
    "yesterday christmas easter hi hello hey dear thanks thank regards cheers ok okay "
    "yes yeah"
)


# A dictionary noun is still a name on its own when it is among the most
# popular names of some country (Maria, Jacob, Teresa, Smith, Keller).
POPULAR_FIRST_RANK = 50
POPULAR_LAST_RANK = 20


@dataclass(frozen=True)
class Gazetteer:
    """Lower-cased word lists.

    `first` and `last` map a name to its best popularity rank; `common` holds
    English words that are not names on their own ("will", "car", "hill").
    """

    first: dict[str, int]
    last: dict[str, int]
    places: frozenset[str]
    common: frozenset[str]


def _ranked_names(pickle_path: Any, max_rank: int) -> dict[str, int]:
    """Names ranking within `max_rank` in some country -> best rank (names-dataset pickle)."""
    gc.disable()  # unpickling ~1M small dicts is several times faster without the collector
    try:
        with pickle_path.open("rb") as raw, gzip.open(raw) as fh:
            data: dict[str, dict[str, Any]] = pickle.load(fh)  # noqa: S301 - installed package
    finally:
        gc.enable()
    names: dict[str, int] = {}
    for name, info in data.items():
        ranks = [r for r in (info.get("rank") or {}).values() if r is not None and r <= max_rank]
        key = name.lower()
        if ranks and key.replace("-", "").replace("'", "").isalpha():
            names[key] = min(min(ranks), names.get(key, max_rank))
    del data
    return names


def _names(cache_dir: Path, max_rank: int) -> tuple[dict[str, int], dict[str, int]]:
    """First and last names, from the cache or extracted from names-dataset once."""
    version = metadata.version("names-dataset")
    cache = cache_dir / f"names-{version}-rank{max_rank}.json.gz"
    if cache.exists():
        with gzip.open(cache, "rt", encoding="utf-8") as fh:
            cached = json.load(fh)
        return cached["first"], cached["last"]
    base = resources.files("names_dataset") / "v3"
    first = _ranked_names(base / "first_names.pkl.gz", max_rank)
    last = _ranked_names(base / "last_names.pkl.gz", max_rank)
    cache_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache_dir, suffix=".partial")
    try:
        with os.fdopen(fd, "wb") as raw, gzip.open(raw, "wt", encoding="utf-8") as fh:
            json.dump({"first": first, "last": last}, fh)
        os.replace(tmp, cache)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return first, last


def _places() -> frozenset[str]:
    """Country names (short, common, official) and subdivision names."""
    import pycountry

    out: set[str] = set()
    for c in pycountry.countries:
        for attr in ("name", "common_name", "official_name"):
            value = getattr(c, attr, None)
            if value:
                out.add(value.lower())
    for s in pycountry.subdivisions:
        name = s.name.split(",")[0].split("(")[0].strip().lower()
        if len(name) >= 4:
            out.add(name)
    return frozenset(out)


def _common_words(nlp: Any, first: dict[str, int], last: dict[str, int]) -> frozenset[str]:
    """English words that are not names on their own.

    Stop words, verbs, adjectives and adverbs always; dictionary nouns unless
    they are popular names (the noun list includes people such as "teresa").
    """
    words: set[str] = set(nlp.Defaults.stop_words) | CALENDAR
    if "lemmatizer" not in nlp.component_names:
        return frozenset(words)
    lookups = nlp.get_pipe("lemmatizer").lookups
    if not lookups.has_table("lemma_index"):
        return frozenset(words)
    index = lookups.get_table("lemma_index")
    for pos in ("noun", "verb", "adj", "adv"):
        is_noun = pos == "noun"
        for w in index.get(pos, []):
            if not w.isalpha():
                continue
            if is_noun and (
                first.get(w, 10**6) <= POPULAR_FIRST_RANK or last.get(w, 10**6) <= POPULAR_LAST_RANK
            ):
                continue
            words.add(w)
    return frozenset(words)


def load_gazetteer(cache_dir: Path, nlp: Any, *, max_rank: int) -> Gazetteer:
    """Build the word lists (names from the cache dir, extracted on first use)."""
    first, last = _names(cache_dir, max_rank)
    return Gazetteer(
        first=first, last=last, places=_places(), common=_common_words(nlp, first, last)
    )


# --- recognisers over the word lists ------------------------------------------------------

NAME_PARTICLES = word_set(
    "van von de der den da di del della du la le dos das bin ibn al el ter ten af av"
)
INITIAL = re.compile(r"[A-Z]\.?")
_NAME_WORD = r"[^\W\d_][\w'’\-]*"
NAME_WORDS = re.compile(rf"{_NAME_WORD}|[A-Z]\.")
# Cues after which a word is a name even when no list knows it, lower case allowed.
STRONG_CUE = re.compile(
    r"(?i)\b(?:my name is|my name's|name is|i am called|i'm called|call me|known as|"
    r"(?:maiden|first|last|middle|sur|full|given|family) ?name is|"
    r"(?:mr|mrs|ms|mx|dr|prof|miss|sir|madam|dame|mme|mlle|herr|frau|señora?|sra?)\.?)[ \t]+"
)
# Cues after which capitalised words that are not common words are a name.
WEAK_CUE = re.compile(
    r"(?i)(?:\b(?:named|called|dear|hi|hello|hey|thanks|thank you|regards|cheers|sincerely|"
    r"signed)[ \t]*,?|\bname[ \t]*:)[ \t]*\n?[ \t]*"
)


def _is_cap(word: str) -> bool:
    return word[:1].isupper() and not (word.isupper() and len(word) <= 4)


class PersonNameRecognizer(SpanRecognizer):
    """People's names from name lists, initials and cues ("my name is", "Dr.").

    A run of capitalised words is a name when its words are known first names
    or surnames (not common English words); a single known first name alone
    scores lower. Runs that spaCy calls a place are left to the place lists.
    """

    ENTITY = "PERSON"

    def __init__(self, gazetteer: Gazetteer) -> None:
        super().__init__()
        self.g = gazetteer

    def strength(self, word: str) -> int:
        """2: a name and not a common word; 1: a name that is also a word; 0: neither."""
        low = word.lower()
        if low not in self.g.first and low not in self.g.last:
            return 0
        return 1 if low in self.g.common or low in self.g.places else 2

    def _runs(self, doc: Any) -> Iterator[list[Any]]:
        run: list[Any] = []
        for tok in doc:
            text = tok.text
            ok = (tok.is_alpha or "'" in text or "’" in text) and _is_cap(text)
            ok = ok or bool(INITIAL.fullmatch(text) and (run or text.endswith(".")))
            ok = ok or bool(run and text.lower() in NAME_PARTICLES)
            if ok and (not run or run[-1].whitespace_ == " "):
                run.append(tok)
                continue
            if run:
                yield run
            run = [tok] if ok else []
        if run:
            yield run

    def _score_run(self, words: list[str]) -> float:
        names = [w for w in words if not INITIAL.fullmatch(w) and w.lower() not in NAME_PARTICLES]
        strengths = [self.strength(w) for w in names]
        if not names or max(strengths) == 0:
            return 0.0
        if len(names) >= 2:
            total = sum(strengths)
            return 0.85 if total >= 3 else 0.7 if total >= 2 and 2 in strengths else 0.0
        if len(words) > 1:  # one name word with an initial: "Ella H." / "J. Snider"
            return 0.8
        low = names[0].lower()
        if strengths[0] == 2:
            return 0.6 if low in self.g.first else 0.45
        return 0.0

    def _from_lists(
        self, doc: Any, places: list[tuple[int, int]]
    ) -> Iterator[tuple[int, int, float]]:
        for run in self._runs(doc):
            while run and (run[0].lower_ in self.g.common or run[0].lower_ in NAME_PARTICLES):
                run = run[1:]
            while run and (run[-1].lower_ in self.g.common or run[-1].lower_ in NAME_PARTICLES):
                run = run[:-1]
            if not run:
                continue
            start, end = run[0].idx, run[-1].idx + len(run[-1].text)
            if any(s <= start and end <= e for s, e in places):
                continue
            words = [t.text for t in run]
            if len(words) > 4:
                for t in run:
                    score = self._score_run([t.text])
                    if score:
                        yield t.idx, t.idx + len(t.text), score
                continue
            score = self._score_run(words)
            if score:
                yield start, end, score

    def _from_cues(self, text: str) -> Iterator[tuple[int, int, float]]:
        for cue, strong in ((STRONG_CUE, True), (WEAK_CUE, False)):
            for m in cue.finditer(text):
                pos, end = m.end(), -1
                for _ in range(3):
                    w = NAME_WORDS.match(text, pos)
                    if (
                        not w
                        or w.group().lower() in self.g.common
                        and not (strong and _is_cap(w.group()))
                    ):
                        break
                    if not _is_cap(w.group()) and not strong:
                        break
                    end = w.end()
                    pos = end + 1 if text[end : end + 1] == " " else len(text) + 1
                if end > 0:
                    yield m.end(), end, 0.8 if strong else 0.65

    def spans(self, text: str, artifacts: Any) -> Iterator[tuple[int, int, float]]:
        places = (
            [(e.start_char, e.end_char) for e in artifacts.entities if e.label_ == "LOCATION"]
            if artifacts is not None
            else []
        )
        if artifacts is not None:
            yield from self._from_lists(artifacts.tokens, places)
        yield from self._from_cues(text)


class PlaceNameRecognizer(SpanRecognizer):
    """Country and region names (capitalised) from pycountry's lists."""

    ENTITY = "LOCATION"

    def __init__(self, gazetteer: Gazetteer) -> None:
        super().__init__()
        self.g = gazetteer

    def spans(self, text: str, artifacts: Any) -> Iterator[tuple[int, int, float]]:
        if artifacts is None:
            return
        toks = [t for t in artifacts.tokens if not t.is_space]
        for i, tok in enumerate(toks):
            if not tok.text[:1].isupper():
                continue
            for n in (4, 3, 2, 1):
                span = toks[i : i + n]
                if len(span) < n:
                    continue
                phrase = " ".join(t.lower_ for t in span)
                if phrase in self.g.places and (n > 1 or phrase not in self.g.common):
                    yield tok.idx, span[-1].idx + len(span[-1].text), 0.7
                    break
