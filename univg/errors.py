"""`UserError`: the one base class of every error that bad input causes.

Each stage raises a subclass whose message names the file, the line or field, and the problem.
The command line prints such errors as one line (`error: ...`) and exits with status 1; any
other exception is a bug and keeps its traceback. Set UNIVG_DEBUG=1 to see tracebacks always.
"""

from __future__ import annotations


class UserError(Exception):
    """Input the user can fix: a file, a row, a param, a model reference or a request."""


# OS errors about a path the user named are input errors too: they carry the file name.
PATH_ERRORS = (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)


def describe(error: BaseException) -> str:
    """One line for the user: the message, plus the file an OS error names."""
    if isinstance(error, OSError) and error.filename and str(error.filename) not in str(error):
        return f"{error.filename}: {error.strerror or error}"
    return str(error) or type(error).__name__
