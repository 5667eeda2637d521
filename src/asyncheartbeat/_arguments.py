"""Argument types of the command line, shared by its commands and the emulator's.

A number of seconds is held to the library's own rule (`check_seconds`); argparse puts
the option's name before the error.
"""

from __future__ import annotations

import argparse

from ._timing import check_seconds


def number(text: str) -> float:
    """A number of seconds, whatever its value: for an option checked once all are parsed."""
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None


def seconds(text: str, *, allow_zero: bool = False) -> float:
    try:
        return check_seconds(repr(text), number(text), allow_zero=allow_zero)
    except ValueError as problem:
        raise argparse.ArgumentTypeError(str(problem)) from None


def positive_seconds(text: str) -> float:
    """A number of seconds above 0."""
    return seconds(text)


def seconds_or_zero(text: str) -> float:
    """A number of seconds, 0 or more."""
    return seconds(text, allow_zero=True)


def port(text: str) -> int:
    """A port number; 0 picks a free one."""
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0 picks a free one)")
    return int(text)
