"""The exceptions of lmpress (raised by lmpress._lmpress, which imports this module)."""

from __future__ import annotations

__all__ = ["Error", "InvalidArgument", "Cancelled", "OutOfMemory", "InternalError"]


class Error(RuntimeError):
    """A failed liblmpress call; str(e) is lmpress_last_error()'s message.

    Attributes set when the library raised it: ``code`` (the lmpress_status
    number) and ``status`` (its name: "failed", "invalid argument", ...).
    """

    code: int = 2
    status: str = "failed"


class InvalidArgument(Error, ValueError):
    """LMPRESS_ERR_INVALID_ARGUMENT: an argument or option out of range."""

    code = 1
    status = "invalid argument"


class Cancelled(Error):
    """LMPRESS_ERR_CANCELLED: a progress callback returned False."""

    code = 3
    status = "cancelled"


class OutOfMemory(Error, MemoryError):
    """LMPRESS_ERR_OUT_OF_MEMORY."""

    code = 5
    status = "out of memory"


class InternalError(Error):
    """LMPRESS_ERR_INTERNAL: a bug in lmpress (please report the message)."""

    code = 6
    status = "internal error"
