"""Would a person accept a topic's label for what its threads are about? (bench only)

Two label-quality figures for bench/topic_labels.py, neither keyed into the label rule:

* **accepted**: a topic whose threads are mostly (half or more) of one gold *subject*
  (a KVRET intent, a STAR, MultiDoGO or M2M domain, Taskmaster-4's coffee orders) is
  accepted when a word of its label is one a person would accept for that subject:
  the lists below, written by hand from the subject names before the labels they judge
  were read (a person's judgement, the bench's answer key: the label rule never sees
  them). A STAR dialogue's gold names several domains ("star:bank+restaurant+weather"):
  a word of any of them is accepted. Topics of other sources (MT-Bench-101's gold names
  a skill, TIAGE and Topical-Chat have none) are not judged, nor topics with no
  majority subject. *wrong* is the share judged and labelled but not accepted; a topic
  left unlabelled is neither.
* **generic**: the share of labels with a word a label should never be made of, by
  rules that know no dataset: a placeholder's fragment (`person`, `location`, ... as a
  whole word of the label beside a placeholder in the topic's text is not tested: the
  label is built from placeholder-free text, so a fragment shows as `<` or `_`), a
  stop word, or a word that at least two people use in more than half of the stream's
  labelled topics (a word of the tenant, not of a topic). Acknowledgements are counted
  apart (`ack`), from the product's own list (`terms.LABEL_STOP`): that figure is by
  construction 0 with it, and says what it removed before.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

# Words a person accepts for each gold subject (singular forms; a label's words are
# folded to singular as its phrases are).
ACCEPT = {
    "weather": "weather forecast rain temperature snow sunny cloudy humid humidity hot cold "
               "wind windy drizzle frost heat fog overcast storm warm climate degree raining "
               "sky",
    "navigate": "direction route navigate navigation address traffic drive driving nearest "
                "closest distance mile road location gas station parking garage quickest "
                "fastest avoid map",
    "schedule": "schedule appointment meeting calendar reminder remind event conference",
    "bank": "bank account balance transfer money fraud credit card checking saving loan "
            "debit pin",
    "restaurant": "restaurant table reservation reserve booking dinner lunch food eat menu "
                  "cuisine lounge",
    "hotel": "hotel room booking reservation stay night motel",
    "plane": "flight plane airline fly airport seat ticket",
    "party": "party guest venue celebration birthday rsvp",
    "ride": "ride car taxi uber driver pickup pick",
    "trip": "trip travel direction route transit bus train destination journey",
    "trivia": "trivia quiz game question",
    "doctor": "doctor appointment clinic physician checkup followup medical",
    "apartment": "apartment viewing rent flat lease bedroom property",
    "meeting": "meeting schedule calendar conference",
    "spaceship": "spaceship ship crew engine captain deck",
    "airline": "flight airline seat boarding baggage ticket airport plane fly booking pass",
    "fastfood": "food order burger fry pizza meal drink combo delivery sandwich chicken "
                "menu cookie brownie dessert",
    "finance": "bank account balance card credit debit payment money transfer loan check "
               "ssn",
    "insurance": "insurance policy claim coverage premium car vehicle accident proof",
    "media": "cable internet channel subscription service package streaming show bill tv",
    "software": "software password account login install app license computer error reset "
                "subscription server",
    "movie-tickets": "movie ticket film cinema theater showtime",
    "coffee": "coffee latte espresso cappuccino americano macchiato mocha tea milk drink "
              "order cup shot syrup cream sugar iced decaf frappuccino oat soy almond",
}
ACCEPT_WORDS = {k: frozenset(v.split()) for k, v in ACCEPT.items()}
NOT_SUBJECTS = ("mtbench101:",)  # gold that names a skill, not what is asked about


def subjects(gold: str | None) -> frozenset[str] | None:
    """The accepted words of a gold topic id (None: not a subject this bench judges)."""
    if gold is None or gold.startswith(NOT_SUBJECTS):
        return None
    domains = gold.split(":", 1)[1].split("+")
    words: set[str] = set()
    for d in domains:
        words |= ACCEPT_WORDS.get(d, frozenset())
    return frozenset(words) or None


def majority_subject(golds: Iterable[str | None]) -> str | None:
    """The gold topic of half or more of a topic's threads, else None."""
    counts = Counter(golds)
    total = sum(counts.values())
    gold, n = counts.most_common(1)[0] if counts else (None, 0)
    return gold if gold is not None and 2 * n >= total else None


def label_words(label: str) -> list[str]:
    return [w for phrase in label.split(", ") for w in phrase.split()]


def judge(label: str | None, gold: str | None) -> str:
    """'accepted', 'wrong', 'unlabelled' or 'unjudged' (no subject gold)."""
    words = subjects(gold)
    if words is None:
        return "unjudged"
    if not label:
        return "unlabelled"
    return "accepted" if set(label_words(label)) & words else "wrong"


def tenant_words(spread: Counter[str], topics: int) -> frozenset[str]:
    """Words two or more people use in more than half of a stream's labelled topics."""
    return frozenset(w for w, n in spread.items() if topics >= 3 and 2 * n > topics)


def generic_reasons(label: str, common: frozenset[str], stop: frozenset[str],
                    ack: frozenset[str]) -> list[str]:
    out = []
    for w in label_words(label):
        if "<" in w or ">" in w or "_" in w:
            out.append("placeholder")
        elif w in stop:
            out.append("stop")
        elif w in ack:
            out.append("ack")
        elif w in common:
            out.append("tenant")
    return out


def judged_summary(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Accepted / wrong / unlabelled shares of the judged topics, and generic labels."""
    judged = [r for r in rows if r["judged"] != "unjudged"]
    labelled = [r for r in rows if r["label"]]
    n = max(len(judged), 1)
    return {"judged_topics": len(judged),
            "accepted": round(sum(r["judged"] == "accepted" for r in judged) / n, 3),
            "wrong": round(sum(r["judged"] == "wrong" for r in judged) / n, 3),
            "unlabelled_judged": round(sum(r["judged"] == "unlabelled" for r in judged) / n, 3),
            "labelled": len(labelled),
            "generic_labels": round(sum(bool(r["generic"]) for r in labelled)
                                    / max(len(labelled), 1), 3),
            "ack_labels": round(sum("ack" in r["generic"] for r in labelled)
                                / max(len(labelled), 1), 3)}
