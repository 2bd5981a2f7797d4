"""The dialog that asks before a screen spends privacy budget on today's release."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label


class ReleaseDialog(ModalScreen[bool]):
    """Confirms making today's differentially private release (it spends budget)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, kind: str, tenants: tuple[str, ...], epsilon: float) -> None:
        super().__init__()
        self.kind, self.tenants, self.epsilon = kind, tenants, epsilon

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(f"Make today's release of {self.kind} figures for "
                        f"{', '.join(self.tenants)}?")
            yield Label(f"It spends epsilon {self.epsilon:g} of each tenant's privacy budget "
                        "for today, once: until tomorrow (UTC) this screen and `semtrace "
                        f"stats {self.kind.split()[0]}` read it without spending more.",
                        classes="note")
            with Horizontal(id="dialog-buttons"):
                yield Button("Release", id="release", variant="primary")
                yield Button("Cancel", id="cancel")

    @on(Button.Pressed, "#release")
    def _release(self) -> None:
        self.dismiss(True)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(False)
