"""Pure formatting for the TUI: bars, durations, labels. Every colour has a word or symbol."""

from __future__ import annotations

import math
import re
from datetime import datetime

from rich.text import Text

from appliance.privacy import Figure
from appliance.words import plural as plural  # the screens' counts, as the CLI's

PLACEHOLDER_RE = re.compile(r"<[A-Z][A-Z0-9_]*>")
SPARK = "▁▂▃▄▅▆▇█"

POSITION_LABELS = {
    "new": "● new",
    "continuation": "↳ continuation",
    "topic_shift": "⤷ topic shift",
    "orphaned": "? orphaned",
}
STATUS_LABELS = {"ok": "✔ ok", "error": "✖ ERROR", "blocked": "⛔ BLOCKED"}
INTENT_LABELS = {
    "information_seeking": "info-seeking",
    "task_execution": "task",
    "conversation_management": "managing",
    "error_recovery": "error recovery",
}


def position_label(position: str) -> str:
    """A position with its symbol, e.g. `⤷ topic shift`."""
    return POSITION_LABELS.get(position, position)


def status_label(status: str | None) -> str:
    """A status with its symbol; unknown when the gateway sent none."""
    return STATUS_LABELS.get(status or "", "· unknown" if status is None else status)


def intent_label(intent: str | None) -> str:
    return INTENT_LABELS.get(intent or "", intent or "–")


def score(value: float) -> str:
    """A score, similarity or feature to two decimals, as the why panel, the turn cards
    and `threads show` print it; one that is not 0 but rounds to it reads `<0.01` (or
    `>-0.01`): `0.00` read as "scored nothing", which the panel says in words."""
    if 0 < value < 0.005:
        return "<0.01"
    if -0.005 < value < 0:
        return ">-0.01"
    return f"{value:.2f}"


def versus(best: float, threshold: float) -> tuple[str, str]:
    """A link score and its threshold as the why panel and `threads show` print them: to
    more decimals (up to 4) where two would print them alike (`best score 0.45 <
    threshold 0.45` read as a contradiction)."""
    digits = 2
    while digits < 4 and best != threshold and f"{best:.{digits}f}" == f"{threshold:.{digits}f}":
        digits += 1
    shown = score(best) if digits == 2 else f"{best:.{digits}f}"
    return shown, f"{threshold:.{digits}f}"


def sim_bar(similarity: float | None, width: int = 8) -> str:
    """A similarity in [0, 1] as a bar of `width` cells followed by its value."""
    if similarity is None:
        return "·" * width + "  n/a"
    value = min(max(similarity, 0.0), 1.0)
    full = round(value * width)
    return "▰" * full + "▱" * (width - full) + f" {score(similarity)}"


def duration(seconds: float | None) -> str:
    """A gap like `+45s`, `+3m10s`, `+2h05m`, `+3d04h` (`–` when unknown)."""
    if seconds is None:
        return "–"
    s = int(round(max(seconds, 0)))
    if s < 60:
        return f"+{s}s"
    if s < 3600:
        return f"+{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"+{s // 3600}h{s % 3600 // 60:02d}m"
    return f"+{s // 86400}d{s % 86400 // 3600:02d}h"


def ago(ts: datetime, now: datetime) -> str:
    """How long before `now`, e.g. `5m ago`, `3d04h ago`, `120d ago` (`in future` for clock
    skew); at most 10 characters, the threads screen's column, up to 27 years."""
    s = (now - ts).total_seconds()
    if s < 0:
        return "in future"
    if s < 60:
        return "just now"
    if s >= 10 * 86400:  # `100d01h ago` was cut to `100d01h ag`: the hours no longer matter
        return f"{int(s // 86400)}d ago"
    return duration(s)[1:] + " ago"


def compact(n: int | float | None) -> str:
    """12, 1.2k, 3.4M."""
    if n is None:
        return "–"
    if abs(n) >= 1_000_000:
        return f"{n / 1_000_000:.1f}M"
    if abs(n) >= 1000:
        return f"{n / 1000:.1f}k"
    return f"{n:g}" if isinstance(n, float) else str(n)


TOO_NOISY = "noisy"
UNLABELLED = "unlabelled"
NO_TOPIC_NAME = "(no topic yet)"


def topic_title(key: str, label: str | None, *, no_topic: str) -> str:
    """How a topic is named on every screen and in `stats` text: its label, else
    `tp_… · unlabelled` (`no_topic`: the key of threads with no topic yet, so named)."""
    if key == no_topic:
        return NO_TOPIC_NAME
    return label or f"{key} · {UNLABELLED}"


def unlabelled_note(k_min_users: int | None) -> str:
    """Why a topic shows no label (the `stats` text and the topics screen say it alike;
    `k_min_users` None: a one-user view, whose report does not carry the policy's)."""
    many = (f"{k_min_users} people share it (k_min_users)" if k_min_users is not None
            else "k_min_users people (privacy.toml) share it")
    return (f"{UNLABELLED}: a topic is named once at least {many}, so that a label never "
            "describes only a few people, and only by a phrase its threads share that says "
            "what it is about")


def says_nothing(f: Figure, *, share: bool = False) -> bool:
    """Whether a noisy ratio is too noisy to read (shown as `noisy`; JSON keeps it).

    A share whose 95% interval is ±50 points or wider spans the whole 0-100% range; a
    mean (turns, tokens or cost per thread) whose interval is ± its own value or wider
    does not even tell it from zero. On small tenants the sums behind them get a small
    part of the release's epsilon (docs/topics.md), and `100%±5243` read as "100%".
    """
    if f.exact:
        return False
    return f.ci95 >= 0.5 if share else f.ci95 >= abs(f.value)


NO_COST = "–"


def cost_shown(costed: Figure, *cost: Figure) -> str | None:
    """How a row's cost reads, decided on what its figures can say, never on the sign
    of the noise: `NO_COST` where no thread of it has a known cost (an exact view: one
    user's), `TOO_NOISY` where a release cannot tell that (the count of threads with a
    cost reaches zero: none, or a few) or any of the cost figures (`cost`: its total and
    mean per thread, as shown), None where they can be shown.

    A noisy count of threads with a cost is never exactly 0 or clearly above it by
    itself: the text and the screens printed `–` (unknown) where the noise drew it at
    or below 0 and `noisy` where it drew it above, for the same threads.
    """
    if costed.exact:
        return NO_COST if costed.value <= 0 else None
    if reaches_zero(costed.value, costed.ci95) or all(says_nothing(f) for f in cost):
        return TOO_NOISY
    return None


def count_text(value: float, ci95: float | None, *, floor: bool = False) -> str:
    """A count of threads, people or prompts (or a noisy total) as every screen and
    `stats` text prints it.

    Exact (`ci95` None): the number. Noisy: `41±3`; where its 95% interval reaches zero
    (the half-width at least the value, the rule by which a share or mean reads `noisy`),
    `<N`, the top of that interval: a topic of a true handful of threads, or none,
    printed `20±37`, read as "20"; where the interval is ± half the value or wider
    (`too_wide`), `~L–H`, the interval itself: `49±48` was read as "49 people". Decided on
    the noisy value and the public noise scale only (post-processing: nothing spent,
    nothing exact looked at). `floor`: the figure is a lower bound (a merged topic's
    people), so it keeps its `±`.
    """
    if ci95 is None:
        return f"{value:.0f}"
    if reaches_zero(value, ci95) and not floor:
        return f"<{math.floor(value + ci95) + 1}"
    if too_wide(value, ci95) and not floor:
        return f"~{interval(value, ci95)}"
    return f"{value:.0f}±{ci95:.0f}"


def interval(value: float, ci95: float, fmt: str = ".0f") -> str:
    """A noisy figure's 95% interval, `L–H` (its low end never under 0)."""
    return f"{max(value - ci95, 0.0):{fmt}}–{value + ci95:{fmt}}"


def reaches_zero(value: float, ci95: float | None) -> bool:
    """Whether a noisy count's 95% interval reaches zero (`ci95` None: exact, it does not)."""
    return ci95 is not None and ci95 > 0 and ci95 >= value


def too_wide(value: float, ci95: float | None) -> bool:
    """Whether a noisy total is too noisy to read as one number: its 95% half-width (ln 20
    times the Laplace scale the release used) is half its value or more, so the true figure
    may be under half of it or over one and a half times it. Such a total is shown as its
    interval (`~L–H`), never as a number (`--json` keeps value and `ci95`). Half: the rule
    by which a share reads `noisy` (±50 points spans the whole range); at the shipped
    policy a topic's thread count (half-width ~37) reads as a number from ~75 threads on,
    its people (~48) from ~96."""
    return ci95 is not None and ci95 > 0 and 2 * ci95 >= abs(value)


def figure_count(f: Figure, *, floor: bool = False) -> str:
    """`count_text` of a released figure."""
    return count_text(f.value, None if f.exact else f.ci95, floor=floor)


def money(amount: float | None) -> str:
    """A cost without its currency: 0.0042, 1.25, 1.2k (`–` when unknown)."""
    if amount is None:
        return "–"
    if amount == 0:
        return "0"
    if amount < 0.01:
        return f"{amount:.4f}"
    if amount < 1000:
        return f"{amount:.2f}"
    return compact(amount)


def sparkline(values: list[int]) -> str:
    """Counts as block characters scaled to the largest."""
    top = max(values, default=0)
    if top <= 0:
        return SPARK[0] * len(values)
    return "".join(SPARK[min(len(SPARK) - 1, round(v / top * (len(SPARK) - 1)))] for v in values)


def redacted_text(text: str | None) -> Text:
    """Redacted text with its placeholders highlighted (the brackets stay visible)."""
    if text is None:
        return Text("[shredded: the key of this record was destroyed]", style="italic")
    out = Text(text)
    for m in PLACEHOLDER_RE.finditer(text):
        out.stylize("bold reverse", m.start(), m.end())
    return out


SHORT_USER = 10  # `u_` and 8 hex digits, on every screen that shortens a pseudonym


def short_user(pseudonym: str) -> str:
    """The start of a pseudonym (enough to tell users apart; filter by this prefix), as
    wide on every screen: search cut it to 6 hex digits where the threads list has 8."""
    return pseudonym[:SHORT_USER]


def when(ts: datetime) -> str:
    """A UTC timestamp as `MM-DD HH:MM`."""
    return ts.strftime("%m-%d %H:%M")
