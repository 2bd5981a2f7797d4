"""A thread's turns in one scrolling widget that draws only the lines on screen.

One widget per turn made a 400-turn thread take seconds to open (each card a widget to
style, lay out and mount). Here the screen asks only for the lines it shows (Textual's
Line API: `ScrollView.render_line`), and a turn is wrapped to lines (Rich, about a
millisecond) when it is first needed: the turns on screen and the selected one at once,
the rest in small batches between key presses. Until a turn is wrapped its height is
estimated from its text; when the real height replaces the estimate, the view keeps the
turn at its top in place. The look is the cards': a gutter that marks the selected turn
(`█`) and failed ones (`▌`), the branches indented behind a `┃` rule under their
`⑂ branch` label, a blank line between turns.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import accumulate

from rich.segment import Segment
from rich.text import Text
from textual import events
from textual.geometry import Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from appliance.tui.tree import Branch, Item, Turn
from appliance.tui.widgets.turn import STATUS_STYLES, turn_text

INDENT = 4  # a branch level: two blanks, the `┃` rule, one blank
GUTTER = 3  # a turn's marker column and a blank either side of its text
BATCH = 40  # turns wrapped at a time in the background (tens of milliseconds)


@dataclass(frozen=True)
class Block:
    """One entry of the view: a turn (its index in reading order) or a branch's label."""

    depth: int
    turn: int | None = None
    label: str = ""


def blocks(items: Sequence[Item], depth: int = 0) -> list[Block]:
    """The view's entries for a layout, in display order (turns numbered 0.. in order)."""
    out: list[Block] = []
    _walk(items, depth, out, [0])
    return out


def _walk(items: Sequence[Item], depth: int, out: list[Block], count: list[int]) -> None:
    for item in items:
        if isinstance(item, Turn):
            out.append(Block(depth, turn=count[0]))
            count[0] += 1
        else:
            out.append(Block(depth + 1, label=_label(item)))
            _walk(item.items, depth + 1, out, count)


def _label(b: Branch) -> str:
    note = "the first reply" if b.index == 0 else "the user went back"
    return f"⑂ branch {b.index + 1} of {b.count} from #{b.from_number} ({note})"


def _flatten(items: Sequence[Item]) -> list[Turn]:
    out: list[Turn] = []
    for it in items:
        out.extend([it] if isinstance(it, Turn) else _flatten(it.items))
    return out


class TurnList(ScrollView, can_focus=True):
    """The turns of a thread; one is selected, and its selection drives the why panel."""

    COMPONENT_CLASSES = {
        "turn-list--selected",  # the selected turn's background
        "turn-list--cursor",  # its marker
        "turn-list--error",
        "turn-list--blocked",
        "turn-list--rule",  # a branch's `┃`
        "turn-list--label",  # a branch's label
    }

    @dataclass
    class Selected(Message):
        """A turn was selected: show why it was linked."""

        turn: Turn

    def __init__(self, *, id: str | None = None) -> None:  # noqa: A002 (Textual's name)
        super().__init__(id=id)
        self._turns: list[Turn] = []
        self._blocks: list[Block] = []
        self._at: dict[int, int] = {}  # block of each turn
        self._cursor = 0
        self._width = -1
        self._heights: list[int] = []  # lines of each block: wrapped, or estimated
        self._exact: list[bool] = []  # whether the block's height is its wrapped one
        self._tops: list[int] = [0]  # first view line of each block, then the total
        self._filled = 0  # blocks before this one are all wrapped
        self._generation = 0  # a new thread or width cancels the background batches
        self._rewrap = False  # the turns on screen are to be wrapped after this frame
        self._strips: dict[tuple[int, bool], list[Strip]] = {}

    # ------------------------------------------------------------------ what it holds

    @property
    def turns(self) -> list[Turn]:
        """The turns in reading order (top to bottom)."""
        return list(self._turns)

    @property
    def cursor(self) -> int:
        """The index of the selected turn in `turns`."""
        return self._cursor

    @property
    def turn(self) -> Turn | None:
        """The selected turn (None before a thread is shown)."""
        return self._turns[self._cursor] if self._turns else None

    def show(self, items: Sequence[Item], record_id: int | None = None) -> None:
        """Show a thread's layout and select the turn of `record_id` (else the first)."""
        self._turns = _flatten(items)
        self._blocks = blocks(items)
        self._at = {b.turn: i for i, b in enumerate(self._blocks) if b.turn is not None}
        self._cursor = next((i for i, t in enumerate(self._turns)
                             if t.record.record_id == record_id), 0)
        self._width = -1
        self._layout()
        self.refresh()
        if self._turns:
            self.call_after_refresh(self._scroll_to_cursor)
            self.post_message(self.Selected(self._turns[self._cursor]))

    def select(self, index: int) -> None:
        """Select the turn at `index` (clamped to the thread), scroll it into view."""
        if not self._turns:
            return
        index = max(0, min(len(self._turns) - 1, index))
        before, self._cursor = self._cursor, index
        for i in {before, index}:
            self._refresh_turn(i)
        self._scroll_to_cursor()
        if index != before:
            self.post_message(self.Selected(self._turns[index]))

    def step(self, by: int) -> None:
        self.select(self._cursor + by)

    def shown(self, index: int) -> str:
        """The text the view draws for the turn at `index`, its wrapped lines joined by a
        space (the gutter and the branch rules left out)."""
        self._layout()
        b = self._at[index]
        left = INDENT * self._blocks[b].depth + GUTTER - 1
        lines = (s.crop(left, self._width - 1).text.strip() for s in self._block_strips(b))
        return " ".join(line for line in lines if line).replace("\u00a0", " ")

    # ------------------------------------------------------------------ heights

    def _layout(self) -> None:
        """At a new width: estimate every height, wrap the first batch, start the rest."""
        width = self.scrollable_content_region.width
        if width <= 0 or width == self._width:
            return
        self._width = width
        self._generation += 1
        self._strips.clear()
        self._heights = [self._estimate(b) for b in self._blocks]
        self._exact = [False] * len(self._blocks)
        self._filled = 0
        self._retop()
        self._fill(self._generation)

    def _estimate(self, block: Block) -> int:
        """A block's height before it is wrapped: its text's length over the width."""
        if block.turn is None:
            return 2
        wide = max(1, self._width - INDENT * block.depth - GUTTER)
        text = self._turns[block.turn].record.text or "[shredded]"
        return 3 + sum(-(-max(1, len(part)) // wide) for part in text.split("\n"))

    def _wrap(self, todo: Iterable[int]) -> None:
        """Wrap these blocks; where a height changes, move what follows, keeping the block
        at the top of the view where it is."""
        changed = False
        for b in todo:
            if not self._exact[b]:
                height = len(self._block_strips(b))
                changed |= height != self._heights[b]
                self._heights[b], self._exact[b] = height, True
        if not changed:
            return
        y = self.scroll_offset.y
        anchor = self._block_at(y)
        offset = y - self._tops[anchor]
        self._retop()
        if self._tops[anchor] + offset != y:
            self.scroll_to(y=self._tops[anchor] + offset, animate=False, force=True,
                           immediate=True)
        self.refresh()

    def _retop(self) -> None:
        self._tops = [0, *accumulate(self._heights)]
        size = Size(self._width, self._tops[-1])
        if size != self.virtual_size:
            self.virtual_size = size
            self._scroll_update(size)

    def _fill(self, generation: int) -> None:
        """Wrap the next batch of turns not yet wrapped; again later until all are."""
        if generation != self._generation:
            return  # another thread, or another width, since
        n = len(self._blocks)
        while self._filled < n and self._exact[self._filled]:
            self._filled += 1
        if self._filled < n:
            self._wrap(range(self._filled, min(n, self._filled + BATCH)))
            self.set_timer(0.01, partial(self._fill, generation))

    def _block_at(self, y: int) -> int:
        return max(0, min(len(self._blocks) - 1, bisect_right(self._tops, y) - 1))

    def _on_screen(self) -> range:
        y = self.scroll_offset.y
        if not self._blocks:
            return range(0)
        return range(self._block_at(y),
                     self._block_at(y + self.scrollable_content_region.height) + 1)

    # ------------------------------------------------------------------ rendering

    def _block_strips(self, b: int) -> list[Strip]:
        block = self._blocks[b]
        selected = block.turn is not None and block.turn == self._cursor
        key = (b, selected)
        if key not in self._strips:
            self._strips[key] = self._render_block(block, selected)
        return self._strips[key]
    def _render_block(self, block: Block, selected: bool) -> list[Strip]:
        base = self.rich_style
        width = max(self._width, INDENT * block.depth + GUTTER + 8)
        rule = self.get_component_rich_style("turn-list--rule")
        prefix = [Segment("  ", base), Segment("┃", rule), Segment(" ", base)] * block.depth
        inner = width - INDENT * block.depth
        console = self.app.console
        if block.turn is None:
            text = Text(block.label, style=self.get_component_rich_style("turn-list--label"))
            body = console.render_lines(text, console.options.update_width(inner), style=base,
                                        pad=True)
            lines = [prefix + line for line in body] + [prefix + [Segment(" " * inner, base)]]
            return [Strip(line, width) for line in lines]
        turn = self._turns[block.turn]
        status = turn.record.status or ""
        style = base + self.get_component_rich_style("turn-list--selected") if selected \
            else base
        if selected:
            mark = Segment("█", self.get_component_rich_style("turn-list--cursor"))
        elif status in STATUS_STYLES:
            mark = Segment("▌", self.get_component_rich_style(f"turn-list--{status}"))
        else:
            mark = Segment(" ", base)
        body = console.render_lines(turn_text(turn), console.options.update_width(inner - GUTTER),
                                    style=style, pad=True)
        lines = [prefix + [mark, Segment(" ", style), *line, Segment(" ", style)]
                 for line in body]
        lines.append(prefix + [Segment(" " * inner, base)])  # the blank line between turns
        return [Strip(line, width) for line in lines]

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        at = y + scroll_y
        width = self.scrollable_content_region.width
        if not self._blocks or self._width < 0 or not 0 <= at < self._tops[-1]:
            return Strip.blank(width, self.rich_style)
        b = self._block_at(at)
        strips = self._block_strips(b)
        if not self._exact[b] and not self._rewrap:  # scrolled past the wrapped ones
            self._rewrap = True
            self.call_after_refresh(self._wrap_on_screen)
        k = at - self._tops[b]
        if k >= len(strips):
            return Strip.blank(width, self.rich_style)
        return strips[k].crop_extend(scroll_x, scroll_x + width, self.rich_style)

    def _wrap_on_screen(self) -> None:
        self._rewrap = False
        self._wrap(self._on_screen())

    def _refresh_turn(self, index: int) -> None:
        if not self._blocks or self._width < 0:
            return
        b = self._at[index]
        self.refresh(Region(0, self._tops[b] - self.scroll_offset.y, self.size.width,
                            self._heights[b]))

    def _scroll_to_cursor(self) -> None:
        """Bring the selected turn into view (wrapped, and the turns around it too)."""
        self._layout()
        if not self._turns or self._width < 0:
            return
        b = self._at[self._cursor]
        for _ in range(2):  # wrapping the turns now on screen may move it once
            self._wrap([b])
            self.scroll_to_region(Region(0, self._tops[b], self._width, self._heights[b] - 1),
                                  force=True, animate=False, immediate=True)
            self._wrap(self._on_screen())

    # ------------------------------------------------------------------ events

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._strips.clear()  # the theme changed: draw again with its colours

    def on_resize(self, _: events.Resize) -> None:
        self._layout()
        self._scroll_to_cursor()

    def on_focus(self, _: events.Focus) -> None:
        if self._turns:
            self.post_message(self.Selected(self._turns[self._cursor]))

    def on_click(self, event: events.Click) -> None:
        at = event.y + self.scroll_offset.y
        if self._blocks and 0 <= at < self._tops[-1]:
            turn = self._blocks[self._block_at(at)].turn
            if turn is not None:
                self.select(turn)
