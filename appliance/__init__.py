"""Semtrace: semantic tracing of AI traffic on a single, air-gapped host."""

__version__ = "0.1.0"
