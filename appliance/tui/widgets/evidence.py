"""The side panel that explains a turn's link decision from the linker's evidence."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from appliance.history import unmatched_signals
from appliance.tui.format import (
    PLACEHOLDER_RE,
    duration,
    position_label,
    score,
    sim_bar,
    versus,
)
from appliance.tui.tree import Turn

# The features a reader can act on, with what they mean; the rest follow as numbers.
KEY_FEATURES = (
    ("sim", "similarity to candidate"),
    ("sim_margin", "lead over next best"),
    ("gap", "time gap (log s)"),
    ("same_session", "same client session"),
    ("ent_cand", "shared entities"),
    ("kw_cand", "shared keywords"),
    ("thread_turns", "turns in thread"),
    ("centroid_sim", "similarity to thread"),
    ("head_sim", "similarity to 1st turn"),
)
# a feature's row is its label, then its value in 7: 30 columns, what the panel (36 wide,
# tcss) leaves inside its border, padding and scrollbar; at 25 every row wrapped in two
LABEL = 23

GATEWAY_REASONS = {  # links the gateway's own signals decided (appliance/history.py)
    ("history", True): "the request's message history ends at this turn",
    ("history", False): "the request's message history held no earlier turn",
    ("previous_response_id", True): "the request continues this turn's response id",
}


# what decided, where the linker's content score did (with or without the client's session)
CONTENT_SIGNALS = {
    "content": "content (similarity, cues and time)",
    "session_id": "the client's session id (the content linked it to a turn of the same "
                  "session)",
}


def _parent(turn: Turn) -> str:
    """The parent as the thread numbers it, or a plain phrase when it is gone (shredded)."""
    return f"#{turn.parent_number}" if turn.parent_number is not None else "an earlier turn"


def _versus(best: float, sign: str, ev: dict[str, Any]) -> str:
    """"0.62 ≥ threshold 0.45", and whose threshold it is when not the policy's:
    "calibrated threshold 0.80" (learned from the tenant's history-linked traffic) or
    "pinned threshold 0.80"; to more decimals (up to 4) where two would print the score
    and threshold alike: `best score 0.45 < threshold 0.45` read as a contradiction."""
    source = ev.get("threshold_source")
    who = f"{source} " if source in ("calibrated", "pinned") else ""
    shown, threshold = versus(best, float(ev["threshold"]))
    return f"{shown} {sign} {who}threshold {threshold}"


def _decision(turn: Turn, ev: dict[str, Any]) -> Text:
    r = turn.record
    best, threshold = ev.get("score"), ev.get("threshold")
    cues = ", ".join(ev.get("cues") or []) or "none"
    gateway = GATEWAY_REASONS.get((ev.get("link_source", ""), r.parent_id is not None))
    if gateway is not None:
        head = (f"✔ Linked to {_parent(turn)}" if r.parent_id is not None
                else "? Orphaned" if r.position == "orphaned" else "● New thread")
        why = f"{gateway} (decided by {ev['link_source']})"
        if r.parent_id is None and r.position == "orphaned":  # not `new`: why
            why = f"reads like a follow-up (cues: {cues}), but {why}"
    elif r.parent_id is not None:
        head = f"✔ Linked to {_parent(turn)}"
        why = f"score {_versus(best, '≥', ev)}" if best is not None \
            and threshold is not None else "linked"
    elif r.position == "orphaned":
        head = "? Orphaned"
        why = f"reads like a follow-up (cues: {cues}) but no earlier prompt scored enough"
    elif not ev.get("scored"):
        head = "● New thread"
        why = "no earlier prompt of this user within the horizon"
    else:
        head = "● New thread"
        why = f"best score {_versus(best, '<', ev)}" if best is not None \
            and threshold is not None else "no candidate scored enough"
    out = Text(head, style="bold")
    out.append(f"\n{why}\n")
    signal = CONTENT_SIGNALS.get(ev.get("link_source", ""))
    if gateway is None and signal is not None:
        out.append(f"decided by {signal}\n")
        out.append(_unheard(ev))
    if r.position == "topic_shift":
        out.append(_shift(ev, gateway is not None))
    return out


def _shift(ev: dict[str, Any], by_gateway: bool) -> str:
    """Why a linked turn reads as a topic shift (docs/linking.md, Labels): a content link
    also had to read as an opening; a turn the gateway's signals linked did not."""
    why = ("topic shift: unlike the turn it continues and the thread's last turns, with no "
           "follow-up cue")
    if by_gateway:
        return f"{why}; the gateway's signal, not its content, keeps it in this thread\n"
    opener = ev.get("opener")
    if isinstance(opener, int | float):
        return f"{why}, and it reads as an opening (opener {score(opener)})\n"
    return f"{why}\n"


def _unheard(ev: dict[str, Any]) -> str:
    """Why the gateway's own signals did not decide a content link: what the request
    carried that named no turn held, or an empty history the prompt looked past."""
    found = ev.get("history")
    hist: dict[str, Any] = found if isinstance(found, dict) else {}
    lines = []
    for name in unmatched_signals(ev):
        if name == "history":
            n = hist.get("messages")
            lines.append(f"its message history ({n} user/assistant messages) named no turn "
                         "held" if isinstance(n, int) else "its message history named no "
                         "turn held")
        else:
            lines.append("its previous_response_id named no turn held")
    if ev.get("back_reference") and hist.get("messages") == 0:
        lines.append("its message history was empty, but the prompt refers back to an "
                     "earlier conversation")
    return "".join(f"{line}\n" for line in lines)


def explain(turn: Turn, *, can_reveal: bool = False, role: str = "compliance") -> Text:
    """The panel's text for one turn; with `can_reveal`, how to reveal its placeholders
    (the command as the session's `role` runs it)."""
    r = turn.record
    ev = r.evidence or {}
    out = Text(f"Why #{turn.number}: {position_label(r.position)}\n", style="bold")
    # the store-wide id that `semtrace threads show` prints and `semtrace reveal` takes
    out.append(f"record {r.record_id}\n")
    if can_reveal and r.text is not None and PLACEHOLDER_RE.search(r.text):
        # whole: without --role (the default role may not reveal) and the compliance
        # credential, the command as shown was refused (exit 4, and audited as denied)
        out.append(f"reveal: semtrace reveal {r.record_id} --role {role} --reason \"…\" "
                   "--compliance-passphrase-file … (and this session's --data-dir and "
                   "credential)\n", style="italic")
    out.append("\n")
    if not ev:
        out.append("No evidence was stored for this turn.\n")
        return out
    out.append_text(_decision(turn, ev))
    # 0 is stored when no other thread was scored (one thread's turns, or none at all):
    # `runner-up 0.00` read as "another thread scored nothing", as did a score under 0.005
    runner = ev.get("runner_up") or 0.0
    out.append(f"runner-up {score(runner)} (the next thread)\n" if runner > 0 else
               "runner-up none (no other thread was scored)\n")
    out.append(f"candidates scored {ev.get('scored', 0)}\n")
    out.append(f"cues {', '.join(ev.get('cues') or []) or 'none'}\n")
    out.append(f"gap since parent {duration(turn.gap_seconds)}\n")
    # without a parent: to the closest turn, which was not taken (the card's and
    # `threads show`'s `best`), not the similarity to what the turn continues
    out.append(f"{'similarity' if r.parent_id is not None else 'best (not taken)'} "
               f"{sim_bar(r.similarity, 6)}\n")
    features: dict[str, float] = ev.get("features") or {}
    if features:
        out.append("\nSignals for the best candidate\n", style="bold")
        for key, label in KEY_FEATURES:
            if key in features:
                out.append(f"{label:<{LABEL}}{score(features[key]):>7}\n")
        rest = [(k, v) for k, v in features.items()
                if k not in dict(KEY_FEATURES) and v]
        if rest:
            out.append("\nOther non-zero features\n", style="bold")
            for k, v in rest:
                out.append(f"{k:<{LABEL}}{score(v):>7}\n")
    return out


class EvidencePanel(VerticalScroll):
    """Shows why the selected turn was linked where it was."""

    def compose(self) -> ComposeResult:
        yield Static("Select a turn to see why it was linked.", id="why-text")

    def clear(self) -> None:
        """Show nothing (the thread is gone)."""
        self.query_one("#why-text", Static).update("")

    def show(self, turn: Turn, *, can_reveal: bool = False, role: str = "compliance") -> None:
        self.query_one("#why-text", Static).update(explain(turn, can_reveal=can_reveal,
                                                           role=role))
        self.scroll_home(animate=False)
