"""Words of redacted prompts: content terms (no placeholders, stop words, courtesies) and labels."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Collection, Mapping

LABEL_TERMS = 5
MIN_TERM_COUNT = 2  # a keyword seen once is never stored or shown
MAX_TERMS = 400  # keyword counts kept per topic
_TOKEN = re.compile(r"<[A-Za-z_]+\d*>|[A-Za-z][A-Za-z'-]*[A-Za-z]")
_STOP_TEXT = """
a about above after again against all almost also am an and any anyone anything are around as at be
because been before being below between both but by can can't cannot could couldn't did didn't do
does doesn't doing don't down during each either else even ever every few for from further get gets
getting give given go goes going gone got had hadn't has hasn't have haven't having he he's her
here here's hers herself him himself his how how's however i i'd i'll i'm i've if in into is isn't
it it's its itself just know last less let let's like likely lot lots made make many may maybe me
might mine more most much must mustn't my myself need needs neither never new next no nor not now
of off often on once one only or other others otherwise ought our ours ourselves out over own per
perhaps please quite rather really said same say says see seem seems several shall shan't she she'd
she'll she's should shouldn't show since so some someone something sometimes still such sure take
tell than that that's the their theirs them themselves then there there's these they they'd they'll
they're they've thing things think this those though through thus to too toward towards under until
up upon us use used using very want wants was wasn't way we we'd we'll we're we've well were
weren't what what's whatever when when's where where's whether which while who who's whom whose why
why's will with within without won't would wouldn't yes yet you you'd you'll you're you've your
yours yourself yourselves ok okay thanks thank thx great good perfect cool fine alright awesome
nice sounds sound right hello hi hey bye goodbye yeah yep nope sorry wow lol help
"""
STOP_WORDS = frozenset(_STOP_TEXT.split())
# Contractions are also typed without their apostrophe ("thats", "dont", "whats"): no
# phrase, label or clustering word either (but for 'll and 'd, whose bare forms are words:
# "ill", "shed"). Which prompts count as content, and their weight, keep STOP_WORDS.
PHRASE_STOP = STOP_WORDS | frozenset(
    w.replace("'", "") for w in STOP_WORDS if "'" in w and not w.endswith(("'ll", "'d")))


def content_terms(text: str) -> list[str]:
    """Lower-case content words of a redacted text: no placeholders, stop words or short words."""
    out = []
    for tok in _TOKEN.findall(text):
        if tok.startswith("<"):
            continue
        word = tok.lower().strip("'-")
        if len(word) > 2 and word not in STOP_WORDS and not word.endswith("'s"):
            out.append(word)
    return out


INFORMATIVE_TERMS = 3  # a prompt with this many content words or more votes in full


def prompt_weight(text: str, *, informative: int = INFORMATIVE_TERMS) -> float:
    """How much a content prompt steers its thread's direction: content words / 3, at most 1.

    "my name is <PERSON>" or "tvs and 3 quantity" (one content word) weigh a
    third of "i want new cable service for my apartment", so that a thread's few
    turns that say what it is about are not drowned by its bookkeeping turns.
    """
    return min(1.0, len(content_terms(text)) / max(informative, 1))


def ctfidf_labels(terms: Mapping[str, Counter[str]], *,
                  top: int = LABEL_TERMS) -> dict[str, tuple[str, ...]]:
    """The most distinctive keywords of each topic, class-based TF-IDF (as in BERTopic)."""
    freq: Counter[str] = Counter()
    for counts in terms.values():
        freq.update(counts)
    sizes = {t: sum(c.values()) for t, c in terms.items()}
    avg = (sum(sizes.values()) / len(sizes)) if sizes else 0.0
    out = {}
    for tid, counts in terms.items():
        total = sizes[tid] or 1
        scored = sorted(((c / total) * math.log(1.0 + avg / freq[w]), w)
                        for w, c in counts.items() if c >= MIN_TERM_COUNT)
        out[tid] = tuple(w for _, w in reversed(scored[-top:]))
    return out




# ---------------------------------------------------------------- phrase labels

LABEL_MIN_USERS = 2  # a phrase used by one person only is never a label or a stored term
# A second label phrase (no word in common with the first) is appended when it scores at
# least this share of the first's score (bench/topic_labels.py, docs/topics.md).
LABEL_SECOND_SHARE = 0.5
# ... and when at least this share as many of the topic's threads use it as use the first
# (a second phrase says what the topic's threads share too, not what two of them say).
LABEL_MIN_SHARE = 0.3  # chosen held out by source: bench/topic_labels.py --loso
# A phrase of k words scores (1 + LABEL_WORD_BONUS x (k - 1)) times its F1 ("hotel booking"
# over "hotel").
LABEL_WORD_BONUS = 0.35
MAX_PHRASE_WORDS = 3
# Words no label is made of, though they are content words to clustering: what a turn
# says about the conversation rather than its subject (acknowledgements, confirmations
# and requests for one, hedges, forms of address) and counts ("two" was the label of a
# coffee-order topic; "correct" of one whose drinks were redacted to placeholders; "sir"
# was half of one). Generic English, no dataset's words; a phrase with one of them never
# qualifies (`phrase_label`).
_LABEL_STOP_TEXT = """
correct incorrect exactly absolutely definitely certainly indeed accurate agreed agree
precisely affirmative yup yea ya yah okey okie nah allright excellent wonderful fantastic
amazing lovely appreciate appreciated welcome cheer cheers thankyou thanx pls plz hmm umm
uh oh ah haha hehe oops gotcha kindly believe guess suppose actually basically probably
honestly literally anyway anyways confirm confirmed confirmation verify verified
sir madam ma'am maam mister dude buddy bro guy guys
folk folks zero two three four five six seven eight nine ten eleven twelve fifteen twenty
thirty forty fifty hundred thousand million first second third fourth fifth couple dozen
"""
LABEL_STOP = frozenset(_LABEL_STOP_TEXT.split())
# A word at least two people use in more than this share of the scope's labelled topics
# (three or more) is a word of the tenant, not of a topic: a phrase made only of such
# words never qualifies (`rows.tenant_words`; chosen held out by source,
# bench/topic_labels.py --loso).
LABEL_COMMON_SHARE = 0.5
# A label's first phrase must score (F1 x word bonus, below) at least this, else the topic
# has no label: one that neither most of its threads use nor mostly its threads ("verify"
# used by 2 of a topic's 16 threads, "information" by 4 of them and 41 others) says
# nothing of what it is about (chosen held out by source, bench/topic_labels.py --loso).
LABEL_MIN_SCORE = 0.15
_PLACEHOLDER = re.compile(r"<[A-Za-z_]+\d*>")
_WORDS = re.compile(r"[A-Za-z][A-Za-z'-]*[A-Za-z]|[^\sA-Za-z]+")


def strip_placeholders(text: str) -> str:
    """Redacted text without its placeholders (`<LOCATION_1>` says nothing about a subject)."""
    return _PLACEHOLDER.sub(" ", text)


def _singular(word: str) -> str:
    """The singular of a plural ("tickets" -> "ticket"); a word whose singular would be a
    stop word stays as it is ("news", "shows", "rights" say something; "new", "show" not)."""
    if len(word) > 4 and word.endswith("ies"):
        one = word[:-3] + "y"
    elif len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is", "es")):
        one = word[:-1]
    else:
        return word
    return word if one in PHRASE_STOP else one


def phrases(text: str) -> set[str]:
    """Candidate label phrases of a redacted text: runs of 1-3 content words.

    Runs break at stop words (and contractions typed without apostrophe),
    punctuation and placeholders; words are lower-cased and plurals folded
    ("movie tickets" -> "movie ticket"), but not onto a stop word ("news",
    "shows" stay). These are also the words the refinement clusters by
    (`TenantTopics.lexical`: the single words), so labels and clustering see the
    same tokens.
    """
    out: set[str] = set()
    run: list[str] = []

    def flush() -> None:
        for size in range(1, MAX_PHRASE_WORDS + 1):
            for s in range(len(run) - size + 1):
                out.add(" ".join(run[s:s + size]))
        run.clear()

    for tok in _WORDS.findall(strip_placeholders(text)):
        word = tok.lower().strip("'-")
        if (not word[:1].isalpha() or len(word) <= 2 or word in PHRASE_STOP
                or word.endswith("'s")):
            flush()
            continue
        run.append(_singular(word))
    flush()
    return out


def phrase_label(counts: Mapping[str, tuple[int, int]], background: Mapping[str, int], *,
                 units: int, second_share: float = LABEL_SECOND_SHARE,
                 min_share: float = LABEL_MIN_SHARE, word_bonus: float = LABEL_WORD_BONUS,
                 beta: float = 1.0, common: Collection[str] = (),
                 min_score: float = LABEL_MIN_SCORE) -> str | None:
    """A short readable label for one topic from its phrases.

    Args:
        counts: phrase -> (threads of the topic using it, distinct users using it).
        background: phrase -> threads using it across all topics of the scope.
        units: threads of the topic.
    A phrase scores how well it tells the topic's threads from the scope's others:
    the harmonic mean (F1) of its coverage (threads of the topic using it / threads
    of the topic) and its specificity (threads of the topic using it / threads of
    the scope using it), i.e. 2n / (units + background). A phrase two of thirty
    threads share has a low coverage, a word every topic uses a low specificity;
    either scores low. Phrases used by fewer than LABEL_MIN_USERS people never
    qualify, nor do phrases with a stop word in them (`phrases` makes none; a
    caller's counts may) or a word of LABEL_STOP ("correct", "sir", "two"), nor
    phrases made only of `common` words (words of most of the scope's topics:
    `rows.tenant_words`); no phrase scoring `min_score` or more: no label. Longer
    phrases score LABEL_WORD_BONUS (35 %) more per extra word ("hotel booking" over
    "hotel"); a second phrase with no word in common is appended when it scores at least
    `second_share` of the first and at least `min_share` as many threads use it.
    `beta` weighs coverage beta times as much as specificity (F-beta; 1: F1); the
    keywords exist for bench/topic_labels.py --loso.
    """
    b2 = beta * beta
    scored = []
    for p, (n, users) in counts.items():
        words = p.split()
        if (users < LABEL_MIN_USERS or n < 2 or not PHRASE_STOP.isdisjoint(words)
                or not LABEL_STOP.isdisjoint(words) or all(w in common for w in words)):
            continue
        f1 = (1.0 + b2) * n / (b2 * max(units, 1) + max(background.get(p, n), n))
        scored.append((f1 * (1.0 + word_bonus * (len(words) - 1)), p))
    if not scored:
        return None
    scored.sort(reverse=True)
    best_score, best = scored[0]
    if best_score < min_score:
        return None
    label = best
    for score, p in scored[1:6]:
        if score < second_share * best_score:
            break
        if counts[p][0] < min_share * counts[best][0]:
            continue
        if not set(p.split()) & set(best.split()):
            label = f"{best}, {p}"
            break
    return label
