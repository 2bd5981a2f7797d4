"""Word lists for the custom recognisers: first names, surnames, places, common words.

Names come from the `names-dataset` package (first and last names with their
popularity rank per country, MIT licence). Its pickles take seconds and about
a gigabyte to load, so the names that rank within `max_rank` in at least one
country are extracted once into a small gzip file in the cache dir and read
from there afterwards. Places are the country and subdivision names of
`pycountry` with their short forms and GeoNames' country names
(`countries.py`). Common English words (which a name list must not fire on: "Will",
"Grant", "Car") come from the spaCy model's own lemmatiser tables and stop
words, so nothing here is ever downloaded.
"""

from __future__ import annotations

import gc
import gzip
import json
import pickle
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from importlib import metadata, resources
from pathlib import Path
from typing import Any

from spacy.lang.en.stop_words import STOP_WORDS

from appliance.redact.countries import country_names, region_names
from appliance.redact.foreign import foreign_phrase
from appliance.redact.recognizers import SpanRecognizer, word_set

# Calendar and greeting words are capitalised in every sentence that names
# them and double as first names in many countries.
CALENDAR = word_set(
    "january february march april may june july august september october november "
    "december monday tuesday wednesday thursday friday saturday sunday today tomorrow "
    "yesterday christmas easter hi hello hey dear thanks thank regards cheers ok okay "
    "yes yeah nope um uh hmm oh ah wow lol pls thx am pm "
    # chat spellings and interjections of informal text
    "aw aww awww erm err meh ugh omg lmao lmfao rofl haha hehe ya yo yah ur u r coz cuz "
    "cos til till gonna wanna gotta kinda tho thru tbh idk btw imo smh rt ff"
)
# Mid-sentence, a capitalised dictionary noun is a name if it is this popular as one.
NOUN_NAME_FIRST_RANK = 250
NOUN_NAME_LAST_RANK = 100
SENTENCE_END = word_set('. ! ? : " “ ” > - * • ( [')


# A dictionary noun is still a name on its own when it is among the most
# popular names of some country (Maria, Jacob, Teresa, Smith, Keller).
POPULAR_FIRST_RANK = 50
POPULAR_LAST_RANK = 20
# An inflected verb that is a surname this popular is not a common word ("Manning", "Gates").
INFLECTED_LAST_RANK = 1000
# The second half of a chat word that tokenised text splits: "gon na", "wan na", "got ta".
SPLIT_TAIL = ("na", "ta")


def split_chat_word(first: str, second: str) -> bool:
    """Whether two words are a chat word split in two as tokenised text writes it ("Wan na")."""
    return second.lower() in SPLIT_TAIL and (first + second).lower() in CALENDAR


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
    nouns: frozenset[str] = frozenset()  # dictionary nouns (popular names among them)
    cities: dict[str, int] = field(default_factory=dict)  # GeoNames city -> population
    towns: frozenset[str] = frozenset()  # one-word GeoNames places below the city size
    country_words: frozenset[str] = frozenset()  # words that name one country
    foreign: frozenset[str] = frozenset()  # function words of other languages ("muito")
    # country names: pycountry's, their short forms and GeoNames' ("russia"), and continents
    countries: frozenset[str] = frozenset()
    # every noun of the lemmatiser's index, also those that are verbs too ("wall", "gas")
    all_nouns: frozenset[str] = frozenset()
    # other names of the biggest cities ("kiev") that are no ordinary word or popular name
    exonyms: frozenset[str] = frozenset()


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


def names_file(max_rank: int) -> Path:
    """The bundled first/last-name list for a rank cut-off (built by models/build_names.py)."""
    from appliance.config import model_dir

    return model_dir() / f"names-rank{max_rank}.json.gz"


def build_names(max_rank: int, out: Path) -> None:
    """Extract the name list from names-dataset (a build-time dependency) into `out`."""
    base = resources.files("names_dataset") / "v3"
    first = _ranked_names(base / "first_names.pkl.gz", max_rank)
    last = _ranked_names(base / "last_names.pkl.gz", max_rank)
    payload = json.dumps({"source": f"names-dataset {metadata.version('names-dataset')}",
                          "first": first, "last": last}, sort_keys=True).encode()
    with out.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as fh:
        fh.write(payload)


def _names(cache_dir: Path, max_rank: int) -> tuple[dict[str, int], dict[str, int]]:
    """First and last names from the bundled list (no extraction at run time)."""
    path = names_file(max_rank)
    if not path.exists():
        from appliance.errors import ConfigError

        raise ConfigError(f"No bundled name list for name_list_rank = {max_rank} ({path}); "
                          f"build it with `python models/build_names.py --rank {max_rank}`.")
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        data = json.load(fh)
    return data["first"], data["last"]


def country_words() -> frozenset[str]:
    """Words that name one or two countries ("israel", "korea", "russian"; not "republic").

    A word shared by the names of three or more countries ("United", "Islamic",
    "Guinea", "Republic") does not identify a country by itself.
    """
    import pycountry

    seen: dict[str, set[str]] = {}
    for c in pycountry.countries:
        for attr in ("name", "common_name", "official_name"):
            for w in re.findall(r"[^\W\d_]+", (getattr(c, attr, None) or "").lower()):
                seen.setdefault(w, set()).add(c.alpha_2)
    return frozenset(w for w, where in seen.items() if len(where) <= 2 and w not in CALENDAR)


def _regular_forms(lemma: str) -> tuple[str, ...]:
    """Third person, past and -ing forms of a regular English verb ("reveal" -> "revealed")."""
    stem_y = len(lemma) > 2 and lemma.endswith("y") and lemma[-2] not in "aeiou"
    third = lemma[:-1] + "ies" if stem_y else lemma + (
        "es" if lemma.endswith(("s", "x", "z", "ch", "sh", "o")) else "s")
    past = lemma[:-1] + "ied" if stem_y else lemma + ("d" if lemma.endswith("e") else "ed")
    ing = lemma[:-1] + "ing" if lemma.endswith("e") and not lemma.endswith("ee") else lemma + "ing"
    return third, past, ing


def _inflections(lookups: Any, index: Any) -> set[str]:
    """Inflected verbs, adjectives and adverbs: regular verb forms ("revealed", "goes") and
    the lemmatiser's exception tables ("got", "woke", "better")."""
    out: set[str] = set()
    for lemma in index.get("verb", []):
        if lemma.isalpha():
            out.update(_regular_forms(lemma))
    if lookups.has_table("lemma_exc"):
        exceptions = lookups.get_table("lemma_exc")
        for pos in ("verb", "adj", "adv"):
            out.update(w for w in exceptions.get(pos, {}) if w.isalpha())
    return out


def all_nouns(nlp: Any) -> frozenset[str]:
    """Every noun of the model's lemmatiser index (none without a lemmatiser)."""
    if "lemmatizer" not in nlp.component_names:
        return frozenset()
    lookups = nlp.get_pipe("lemmatizer").lookups
    if not lookups.has_table("lemma_index"):
        return frozenset()
    return frozenset(w for w in lookups.get_table("lemma_index").get("noun", []) if w.isalpha())


def _common_words(
    nlp: Any, first: dict[str, int], last: dict[str, int]
) -> tuple[frozenset[str], frozenset[str]]:
    """English words that are not names on their own, and the part of them that are nouns.

    Stop words, verbs, adjectives and adverbs always; dictionary nouns unless
    they are popular names (the noun list includes people such as "teresa").
    """
    words: set[str] = set(nlp.Defaults.stop_words) | CALENDAR
    nouns: set[str] = set()
    if "lemmatizer" not in nlp.component_names:
        return frozenset(words), frozenset()
    lookups = nlp.get_pipe("lemmatizer").lookups
    if not lookups.has_table("lemma_index"):
        return frozenset(words), frozenset()
    index = lookups.get_table("lemma_index")
    for pos in ("verb", "adj", "adv"):
        words.update(w for w in index.get(pos, []) if w.isalpha())
    # An inflected form that is also a well-known surname ("Manning", "Banks") stays a name.
    words.update(w for w in _inflections(lookups, index) if last.get(w, 10**6) > INFLECTED_LAST_RANK
                 and first.get(w, 10**6) > POPULAR_FIRST_RANK)
    for w in index.get("noun", []):
        popular = (
            first.get(w, 10**6) <= POPULAR_FIRST_RANK or last.get(w, 10**6) <= POPULAR_LAST_RANK
        )
        if w.isalpha() and w not in words:
            nouns.add(w)
            if not popular:
                words.add(w)
    return frozenset(words), frozenset(nouns)


def load_gazetteer(cache_dir: Path, nlp: Any, *, max_rank: int) -> Gazetteer:
    """Build the word lists (names from the cache dir, extracted on first use)."""
    from appliance.redact.places import CITY_POPULATION, load_places

    first, last = _names(cache_dir, max_rank)
    common, nouns = _common_words(nlp, first, last)
    places, geonames_countries, alternates = load_places()
    countries = country_names(geonames_countries)
    cities = {k: v for k, v in places.items() if v >= CITY_POPULATION}
    towns = frozenset(k for k, v in places.items() if v < CITY_POPULATION and k.isalpha())
    from appliance.redact.foreign import foreign_function_words

    foreign = foreign_function_words(common, NAME_PARTICLES)
    g = Gazetteer(first=first, last=last, places=region_names(countries), common=common,
                  nouns=nouns, cities=cities, towns=towns, country_words=country_words(),
                  foreign=foreign, countries=countries, all_nouns=all_nouns(nlp))
    return replace(g, exonyms=exonyms(alternates, g, nlp.vocab))


# A dictionary noun among the biggest cities' other names is a place name ("kiev", "bombay":
# WordNet holds them) only when its static vector is at least this close to the mean of
# the big cities' vectors; ordinary nouns ("soul" of Seoul, "vine" of Vienna, "pesto")
# are below 0.07, the exonyms above 0.17.
EXONYM_SIMILARITY = 0.15


def exonyms(alternates: dict[str, int], g: Gazetteer, vocab: Any) -> frozenset[str]:
    """The alternate names of the biggest cities that are no ordinary word ("canton"), no
    popular first name or surname, no other language's function word, and, if a
    dictionary noun, close to a city in the model's word vectors."""
    import numpy as np

    from appliance.redact.context import is_ordinary
    from appliance.redact.places import EXONYM_POPULATION, POPULAR_NAME_RANK

    def unit(word: str) -> Any:
        vec = vocab.get_vector(word)
        norm = float(np.linalg.norm(vec))
        return vec / norm if norm else None

    big = [v for v in (unit(c) for c, n in g.cities.items() if n >= EXONYM_POPULATION
                       and c.isalpha() and vocab.has_vector(c)) if v is not None]
    centre = np.mean(big, axis=0) if big else None

    def city_like(word: str) -> bool:
        if not vocab.has_vector(word):
            return True  # too rare for the vectors: no ordinary word
        vec = unit(word)
        return (centre is not None and vec is not None
                and float(vec @ centre) / float(np.linalg.norm(centre)) >= EXONYM_SIMILARITY)

    return frozenset(
        w for w in alternates
        if not is_ordinary(w, g) and w not in g.foreign
        and min(g.first.get(w, 10**6), g.last.get(w, 10**6)) > POPULAR_NAME_RANK
        and (w not in g.common or city_like(w)))


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


# A speaker label at the start of a line: "Vsevolod: Who are you?"
SPEAKER = re.compile(r"(?m)^[ \t>]*([A-Z][^\W\d_]{1,20})[ \t]*:[ \t]*\S")


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

    def strength(self, word: str, *, initial: bool = False) -> int:
        """2: a name and not a common word; 1: a name that is also a word; 0: neither.

        A dictionary noun capitalised mid-sentence ("Todd", "Logan") counts as
        a name when it is popular as one; at the start of a sentence it does not.
        """
        low = word.lower()
        g = self.g
        if low not in g.first and low not in g.last:
            return 0
        if low.endswith("s") and low[:-1] in g.common:  # plural of a word: "Kids", "Tales"
            return 1
        if low in g.places or (low in g.common and low not in g.nouns):
            return 1
        if low in g.nouns and low not in g.common:  # a popular name that is also a noun
            return 2
        if low in g.nouns:
            popular = (
                g.first.get(low, 10**6) <= NOUN_NAME_FIRST_RANK
                or g.last.get(low, 10**6) <= NOUN_NAME_LAST_RANK
            )
            return 2 if popular and not initial else 1
        return 2

    def all_common(self, words: list[str]) -> bool:
        """Whether every word is a common English word and not a strong name ("Discipline")."""
        return all(w.lower() in self.g.common and self.strength(w) < 2 for w in words)

    def _runs(self, doc: Any, caseless: bool) -> Iterator[list[tuple[Any, bool]]]:
        """Runs of space-separated name-like tokens, each with its sentence-initial flag."""
        run: list[tuple[Any, bool]] = []
        prev = None
        whole = doc.text  # built on each access: once here
        for tok in doc:
            text = tok.text
            initial = prev is None or prev.text in SENTENCE_END or "\n" in prev.text
            prev = tok
            # A piece of a word the tokenizer split ("gon" of "gonna") is not a name,
            # nor the first half of one that tokenised text splits itself ("Gon na").
            glued = whole[tok.idx + len(text):tok.idx + len(text) + 1].isalpha() or (
                tok.i + 1 < len(doc) and split_chat_word(text, doc[tok.i + 1].text))
            if caseless:
                ok = (
                    tok.is_alpha
                    and tok.lower_ not in self.g.nouns
                    and self.strength(text, initial=True) == 2
                )
            else:
                ok = (tok.is_alpha or "'" in text or "’" in text) and _is_cap(text)
                ok = ok or bool(INITIAL.fullmatch(text) and (run or text.endswith(".")))
            ok = (ok or bool(run and text.lower() in NAME_PARTICLES)) and not glued
            if ok and (not run or run[-1][0].whitespace_ == " "):
                run.append((tok, initial))
                continue
            if run:
                yield run
            run = [(tok, initial)] if ok else []
        if run:
            yield run

    def _score_run(self, run: list[tuple[str, bool]]) -> float:
        names = [
            (w, i) for w, i in run if not INITIAL.fullmatch(w) and w.lower() not in NAME_PARTICLES
        ]
        strengths = [self.strength(w, initial=i) for w, i in names]
        if not names or max(strengths) == 0:
            return 0.0
        if len(names) >= 2:
            total = sum(strengths)
            if total >= 3:
                return 0.85
            if total >= 2 and 2 in strengths:
                return 0.7
            both = names[0][0].lower() in self.g.first and names[-1][0].lower() in self.g.last
            return 0.5 if both and min(strengths) >= 1 else 0.0
        if len(run) > 1:  # one name word with an initial: "Ella H." / "J. Snider"
            return 0.8
        # Alone, a noun needs to be a very popular name ("Maria", not "Wisdom").
        if self.strength(names[0][0], initial=True) == 2 and len(names[0][0]) > 2:
            return 0.6 if names[0][0].lower() in self.g.first else 0.45
        return 0.0

    def _trim(self, run: list[tuple[Any, bool]]) -> list[tuple[Any, bool]]:
        """Drop common words and particles at either end ("Tell Maria" -> "Maria").

        A popular first name and a surname stay even when both are also words
        ("Rob Ford", "Bill Shorten"; not "Ask Claude"): the pair reads as a name.
        """
        if len(run) == 2 and self._first_last(run[0][0].text, run[1][0].text):
            return run

        def weak(item: tuple[Any, bool]) -> bool:
            tok, initial = item
            low = tok.lower_
            return low in NAME_PARTICLES or (
                low in self.g.common and self.strength(tok.text, initial=initial) < 2
            )

        while run and weak(run[0]):
            run = run[1:]
        while run and weak(run[-1]):
            run = run[:-1]
        return run

    def _first_last(self, first: str, last: str) -> bool:
        f, la = first.lower(), last.lower()
        return (self.g.first.get(f, 10**6) <= NOUN_NAME_FIRST_RANK and la in self.g.last
                and len(f) > 2 and len(la) > 2
                and not {f, la} & (STOP_WORDS | CALENDAR)
                and _is_cap(first) and _is_cap(last))

    def _from_lists(
        self, doc: Any, text: str, places: list[tuple[int, int]], caseless: bool
    ) -> Iterator[tuple[int, int, float]]:
        for raw in self._runs(doc, caseless):
            run = self._trim(raw)
            if not run:
                continue
            start, end = run[0][0].idx, run[-1][0].idx + len(run[-1][0].text)
            if any(s <= start and end <= e for s, e in places):
                continue
            pieces = [[item] for item in run] if len(run) > 4 else [run]
            for piece in pieces:
                score = self._score_run([(t.text, i) for t, i in piece])
                if caseless:
                    score = min(score, 0.5)
                start, end = piece[0][0].idx, piece[-1][0].idx + len(piece[-1][0].text)
                if score and not foreign_phrase(text[start:end], self.g.foreign,
                                                self.g.first, self.g.last, text):
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
            caseless = not any(c.isupper() for c in text)
            yield from self._from_lists(artifacts.tokens, text, places, caseless)
        yield from self._from_cues(text)
        for m in SPEAKER.finditer(text):
            low = m.group(1).lower()
            if low not in self.g.common and low not in self.g.places:
                yield m.start(1), m.end(1), 0.5


class PlaceNameRecognizer(SpanRecognizer):
    """Country and region names (capitalised) from pycountry's lists.

    One word counts unless it is an ordinary word (stop word, verb, adjective,
    adverb): the dictionary's noun list holds most countries and regions
    ("canada", "cornwall"), so being a noun does not rule a place out.
    """

    ENTITY = "LOCATION"

    def __init__(self, gazetteer: Gazetteer) -> None:
        super().__init__()
        self.g = gazetteer

    def spans(self, text: str, artifacts: Any) -> Iterator[tuple[int, int, float]]:
        from appliance.redact.context import is_ordinary

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
                if phrase in self.g.places and (n > 1 or not is_ordinary(phrase, self.g)):
                    yield tok.idx, span[-1].idx + len(span[-1].text), 0.7
                    break
