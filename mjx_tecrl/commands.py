"""The command-line tools' bad-input convention: one line on stderr naming the value and what is allowed, exit
status 2, before anything is compiled or written (train.py, evaluate, robustness, render, plot)."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

EXIT_BAD_INPUT = 2


def fail(name: str, message: str) -> NoReturn:
    """`NAME: error: MESSAGE` on stderr, then exit status 2."""
    print(f"{name}: error: {message}", file=sys.stderr)
    raise SystemExit(EXIT_BAD_INPUT)


class Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is `fail(error_name, ...)`: one line and exit status 2 (no usage dump)."""

    def __init__(self, *args, error_name: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.error_name = error_name

    def error(self, message: str) -> NoReturn:
        fail(self.error_name, message)
