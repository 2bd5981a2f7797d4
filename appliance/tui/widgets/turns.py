"""A thread's turns in one scrolling widget that draws only the lines on screen.

One widget per turn made a 400-turn thread take seconds to open (each card a widget to
style, lay out and mount). Here the turns are rendered to lines once per width (a few
milliseconds of Rich wrapping per hundred turns), and the screen asks only for the lines
it shows (Textual's Line API: `ScrollView.render_line`). The look is the cards': a gutter
that marks the selected turn (`█`) and failed ones (`▌`), the branches indented behind a
`┃` rule under their `⑂ branch` label, a blank line between turns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

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
        self._lines: list[tuple[int, int]] = []  # (block, line within it) per view line
        self._tops: list[int] = []  # first view line of each block
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
        self._strips.clear()
        self._width = -1
        at = next((i for i, t in enumerate(self._turns) if t.record.record_id == record_id), 0)
        self._cursor = at
        self._layout()
        self.refresh()
        if self._turns:
            self.call_after_refresh(self._scroll_to_cursor)
            self.post_message(self.Selected(self._turns[at]))

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
        b = self._block_of(index)
        left = INDENT * self._blocks[b].depth + GUTTER - 1
        lines = (s.crop(left, self._width - 1).text.strip() for s in self._block_strips(b))
        return " ".join(line for line in lines if line).replace("\u00a0", " ")

    # ------------------------------------------------------------------ rendering

    def _block_of(self, turn: int) -> int:
        return self._at[turn]

    def _layout(self) -> None:
        """Render every entry at the current width (once per width) and size the view."""
        width = self.scrollable_content_region.width
        if width <= 0 or width == self._width:
            return
        self._width = width
        self._strips.clear()
        self._lines, self._tops = [], []
        for b in range(len(self._blocks)):
            self._tops.append(len(self._lines))
            self._lines.extend((b, k) for k in range(len(self._block_strips(b))))
        size = Size(width, len(self._lines))
        if size != self.virtual_size:
            self.virtual_size = size
            self._scroll_update(size)

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
        self._layout()
        scroll_x, scroll_y = self.scroll_offset
        at = y + scroll_y
        width = self.scrollable_content_region.width
        if not 0 <= at < len(self._lines):
            return Strip.blank(width, self.rich_style)
        b, k = self._lines[at]
        return self._block_strips(b)[k].crop_extend(scroll_x, scroll_x + width, self.rich_style)

    def _refresh_turn(self, index: int) -> None:
        if not self._blocks or not self._lines:
            return
        b = self._block_of(index)
        top = self._tops[b]
        self.refresh(Region(0, top - self.scroll_offset.y, self.size.width,
                            len(self._block_strips(b))))

    def _scroll_to_cursor(self) -> None:
        self._layout()
        if not self._turns or not self._lines:
            return
        b = self._block_of(self._cursor)
        height = len(self._block_strips(b)) - 1  # the card, not the blank after it
        self.scroll_to_region(Region(0, self._tops[b], self._width, height), force=True,
                              animate=False, immediate=True)

    # ------------------------------------------------------------------ events

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._width = -1  # the theme changed: render again with its colours

    def on_resize(self, _: events.Resize) -> None:
        self._layout()
        self._scroll_to_cursor()

    def on_focus(self, _: events.Focus) -> None:
        if self._turns:
            self.post_message(self.Selected(self._turns[self._cursor]))

    def on_click(self, event: events.Click) -> None:
        at = event.y + self.scroll_offset.y
        if 0 <= at < len(self._lines):
            turn = self._blocks[self._lines[at][0]].turn
            if turn is not None:
                self.select(turn)
