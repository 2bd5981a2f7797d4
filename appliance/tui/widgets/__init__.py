"""Widgets of the Semtrace TUI."""
