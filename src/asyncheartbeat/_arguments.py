"""Argument types of the command line, shared by its commands and the emulator's."""

from __future__ import annotations

import argparse
import math


def seconds(text: str, *, allow_zero: bool = False) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not (math.isfinite(value) and (value >= 0 if allow_zero else value > 0)):
        bound = "0 seconds or more" if allow_zero else "more than 0 seconds"
        raise argparse.ArgumentTypeError(f"{text!r} must be {bound}")
    return value


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
