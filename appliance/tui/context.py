"""What every screen of the app needs, handed down from `make_app` (attributes down)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from textual.dom import DOMNode

    from appliance.tui.aggregates import AggregateReader
    from appliance.tui.data import Reader
    from appliance.tui.remote import SocketAggregates, SocketSearcher
    from appliance.tui.searcher import Searcher
    from appliance.tui.views import ComplianceReader


@dataclass
class TuiContext:
    """The readers (of the store, or over the query socket), the role and its screens, the
    clock and refresh rate."""

    reader: Reader
    aggregates: AggregateReader | SocketAggregates
    role: str
    modes: tuple[str, ...]
    clock: Callable[[], datetime]
    refresh_seconds: float = 5.0
    page_size: int = 100
    searcher: Searcher | SocketSearcher | None = None
    compliance: ComplianceReader | None = None
    report_dir: Path = Path(".")
    can_reveal: bool = False  # the role may reveal: the why panel says how, where it helps


def context(node: DOMNode) -> TuiContext:
    """The context of the app a widget or screen belongs to."""
    return cast(TuiContext, node.app.ctx)  # type: ignore[attr-defined]
