"""The base of sempairs' own errors: a problem with the user's input or files, not a bug.

Every error sempairs raises on purpose derives from :class:`SempairsError` (most also from
``ValueError``, ``RuntimeError`` or ``FileExistsError``, which callers relied on before). Its
message names the file, row or key at fault and the fix. The command line prints such an error
as one line and exits with status 2; any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class SempairsError(Exception):
    """A problem with the user's input, files or settings; the message names it and the fix."""


class SempairsWarning(UserWarning):
    """Something a user should know about a result that is still valid (the command line prints it as one line)."""


class InputError(SempairsError, ValueError):
    """A value the user gave (an option, an argument) that cannot be used; the message says what is allowed."""


class MissingPackage(SempairsError, ImportError):
    """A package that a chosen setting needs is not installed; the message gives the pip command."""
