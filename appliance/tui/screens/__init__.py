"""Screens of the Semtrace TUI."""
