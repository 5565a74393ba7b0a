"""Errors a user can fix. The CLI prints them as one-line messages (no traceback) and exits 2."""


class UsageError(Exception):
    """Bad flags, config values, or paths: exit status 2."""


class DataError(UsageError):
    """A data file has bad rows. `errors` holds one `FILE:LINE: field: message` line per problem."""

    def __init__(self, errors: list[str]):
        self.errors = list(errors)
        head = self.errors[0] if self.errors else "invalid data"
        more = f" (and {len(self.errors) - 1} more)" if len(self.errors) > 1 else ""
        super().__init__(head + more)


class TrainingStopped(Exception):
    """Training stopped on a condition the user must see (non-finite loss, out of memory): exit status 1.

    `reported` is True when the message was already printed where it arose (see distributed.peer_lost).
    """

    reported = False


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (its type name if it has none), for one-line errors."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
