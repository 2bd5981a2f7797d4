"""Messages that go up from screens and widgets to the app."""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message


@dataclass
class OpenThread(Message):
    """Open the thread view, optionally with one turn selected."""

    thread_id: str
    record_id: int | None = None


@dataclass
class ShowThreads(Message):
    """Switch to the threads screen with this filter line applied (`heading`: what the
    list is, shown above it while that filter stays: a topic's drill-down)."""

    filter_text: str
    heading: str = ""
