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

from appliance.redact.countries import country_names, region_names
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


def load_names(max_rank: int) -> tuple[dict[str, int], dict[str, int]]:
    """First and last names from the bundled list (no extraction at run time)."""
    path = names_file(max_rank)
    if not path.exists():
        from appliance.errors import ConfigError

        raise ConfigError(f"No bundled name list for name_list_rank = {max_rank} ({path}); "
                          f"build it with `python models/build_names.py --rank {max_rank}`.")
    from appliance.embed import read_bundled_list

    data = read_bundled_list(path)
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

    first, last = load_names(max_rank)
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
