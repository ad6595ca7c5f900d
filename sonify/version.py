"""The package version, in one place: the wheel's metadata and the trace header read it."""

__version__ = "0.2.0"
