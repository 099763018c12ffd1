"""Errors that the CLI reports as one clear message, without a traceback."""

from __future__ import annotations


class GeoclassError(Exception):
    """Base of every error caused by the user's input or configuration."""


class ConfigError(GeoclassError):
    """The configuration file is missing, unreadable or invalid."""


class InputError(GeoclassError):
    """One or more input files break a rule; `problems` lists them all."""

    def __init__(self, problems: list[str] | str):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(f"- {p}" for p in self.problems))

    def __reduce__(self):  # raised in a dask worker, it must cross the wire whole
        return (type(self), (self.problems,))


class ClusterError(GeoclassError):
    """The dask cluster cannot start, cannot be reached, or cannot make progress."""
