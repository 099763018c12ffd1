"""Errors that the CLI reports as one clear message, without a traceback."""

from __future__ import annotations


class GeoclassError(Exception):
    """Base of every error caused by the user's input or configuration."""


class ConfigError(GeoclassError):
    """The configuration file is missing, unreadable or invalid."""


class InputError(GeoclassError):
    """One or more input files break a rule; `problems` lists them all."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(f"- {p}" for p in self.problems))
