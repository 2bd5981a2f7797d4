"""The training augmentations of bench/train_linker.py `--pause-openers` and
`--pause-resumes` (pure logic, plain vectors): synthetic users built only from the turns
handed in, each a conversation's first turn then, 1-24 h later, an unrelated opener of
another user labelled new (or its own real second turn, linked); the real users are not
touched."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

from pause_openers import PAUSE_BASE, RESUME_BASE, pause_users, resume_users  # noqa: E402


@dataclass(frozen=True)
class Turn:  # the fields of train_linker.Turn that the augmentation reads or sets
    index: int
    user: str
    source: str
    ts: datetime
    vector: np.ndarray
    text: str
    session_key: str | None
    gold_thread: str
    gold_parent: int | None
    opener: float = 0.5


def _users() -> dict[str, list[Turn]]:
    rng = np.random.default_rng(1)
    t0 = datetime(2026, 3, 2, 9, tzinfo=UTC)
    users: dict[str, list[Turn]] = {}
    for u in range(6):
        turns = []
        for k in range(3):  # one conversation: an opener, two follow-ups
            v = rng.normal(size=8)
            turns.append(Turn(index=u * 10 + k, user=f"u{u}", source=f"s{u % 2}",
                              ts=t0 + timedelta(minutes=k), vector=v / np.linalg.norm(v),
                              text=f"turn {u}.{k}", session_key="win",
                              gold_thread=f"c{u}", gold_parent=None if k == 0 else u * 10 + k - 1,
                              opener=0.9 if k == 0 else 0.1))
        users[f"u{u}"] = turns
    return users


def test_each_synthetic_user_is_an_opener_alone_then_an_unrelated_opener_hours_later() -> None:
    users = _users()
    before = {u: list(ts) for u, ts in users.items()}
    made = pause_users(users, 20, max_cosine=0.5)
    assert len(made) == 20 and users == before
    openers = {t.text: t for ts in users.values() for t in ts if t.gold_parent is None}
    indices = set()
    for name, (a, b) in made.items():
        assert a.user == b.user == name and name not in users
        assert a.text in openers and b.text in openers  # openers of the turns handed in only
        assert openers[a.text].user != openers[b.text].user
        assert a.gold_parent is None and b.gold_parent is None and a.gold_thread != b.gold_thread
        assert a.session_key is None and b.session_key is None
        assert timedelta(hours=1) <= b.ts - a.ts <= timedelta(hours=24)
        assert float(a.vector @ b.vector) < 0.5
        assert b.opener == openers[b.text].opener  # its cross-fitted probability kept
        indices |= {a.index, b.index}
    assert len(indices) == 40 and min(indices) >= PAUSE_BASE


def test_nothing_is_made_when_asked_for_none_or_from_one_user() -> None:
    users = _users()
    assert pause_users(users, 0) == {}
    assert pause_users({"u0": users["u0"]}, 5) == {}


def test_a_resumed_conversation_is_its_first_turn_then_its_own_second_turn_hours_later() -> None:
    users = _users()
    before = {u: list(ts) for u, ts in users.items()}
    made = resume_users(users, 10)
    assert len(made) == 10 and users == before
    by_text = {t.text: t for ts in users.values() for t in ts}
    for name, (a, b) in made.items():
        assert a.user == b.user == name and min(a.index, b.index) >= RESUME_BASE
        assert by_text[a.text].gold_parent is None  # a real opener
        assert by_text[b.text].gold_parent == by_text[a.text].index  # its own next turn
        assert b.gold_parent == a.index and b.gold_thread == a.gold_thread
        assert a.session_key is None and b.session_key is None
        assert timedelta(hours=1) <= b.ts - a.ts <= timedelta(hours=24)
    assert resume_users(users, 0) == {}
