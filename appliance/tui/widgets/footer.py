"""Textual's footer, recomposed only when the keys it shows change."""

from __future__ import annotations

from textual.screen import Screen
from textual.widgets import Footer


class KeysFooter(Footer):
    """The footer of a screen with many focusable widgets (the thread view's turns).

    Textual's footer recomposes on every focus change, and each recompose lays the whole
    screen out again: on a 400-turn thread, every card at every step. The turns share
    the screen's keys, so stepping between them changes nothing the footer shows.
    """

    _shown: tuple[tuple[object, ...], ...] | None = None

    def bindings_changed(self, screen: Screen[object]) -> None:
        shown = tuple((key, a.binding.action, a.binding.description, a.binding.show,
                       a.enabled, a.tooltip) for key, a in screen.active_bindings.items())
        if screen.app.app_focus:
            if shown == self._shown and self.is_attached and screen is self.screen:
                return
            self._shown = shown
        super().bindings_changed(screen)
