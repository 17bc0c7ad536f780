"""Errors the entry points turn into one line on stderr and exit status 2."""

from __future__ import annotations

import re


class ConfigError(Exception):
    """Bad input: a flag, file or folder that is not what was expected.

    The message names the flag or file, what was found and what was expected.
    """


class DataError(ConfigError):
    """A dataset file that cannot be read (missing folder, corrupt image, malformed list file)."""


class TrainingError(Exception):
    """Training cannot go on (e.g. a non-finite loss); the message names epoch and step."""


_WORKER_TRACEBACK = re.compile(r"Original Traceback", re.MULTILINE)


def one_line(error: BaseException) -> str:
    """The error's message as one line.

    Exceptions raised inside DataLoader workers come back with the worker's traceback in their
    message; the last line of that traceback ("pkg.DataError: corrupt image ...") holds the message.
    """
    text = str(error).strip()
    if _WORKER_TRACEBACK.search(text):
        last = text.splitlines()[-1]
        text = last.split(": ", 1)[1] if ": " in last else last
    return " ".join(text.split())
