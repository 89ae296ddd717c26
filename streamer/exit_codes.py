"""Exit codes of the ``streamer`` command and the one failure a command ends with.

A command that cannot do its work raises :class:`CommandFailed`; the top-level handler
in streamer/cli.py prints its message as one line, ``streamer: <message>``, and exits
with its code. Scripts branch on the code, people read the line: the message says what
failed and what to do about it. The table is repeated in ``streamer --help`` and in
docs/OPERATIONS.md ("Exit codes"); tests/unit/test_cli_errors.py keeps them equal.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    INTERNAL = 1       # a bug: rerun with --traceback and report it
    USAGE = 2          # bad arguments or STREAMER_* settings
    REJECTED = 3       # done, but some input lines were rejected (each one named)
    FILE = 4           # a file to read or write is missing or not accessible
    UNREACHABLE = 5    # Kafka or the worker did not answer in time
    WORKER_ERROR = 6   # the worker answered with an HTTP error (status in the message)
    SEND_FAILED = 7    # Kafka refused records while sending
    STATE = 8          # Redis holds state of a layout this version cannot use
    REFUSED = 9        # the ledger refused or found problems (the message names them)
    UNSUPPORTED = 10   # this build cannot do that yet (the message says what is missing)
    NO_TOPIC = 11      # a Kafka topic the command sends to does not exist (message names it)
    INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)


EXIT_CODE_MEANINGS: dict[ExitCode, str] = {
    ExitCode.OK: "success",
    ExitCode.INTERNAL: "unexpected error (a bug): rerun with --traceback and report it",
    ExitCode.USAGE: "bad arguments or STREAMER_* settings",
    ExitCode.REJECTED: "finished, but some input lines were rejected (each named on stderr)",
    ExitCode.FILE: "a file to read or write is missing or not accessible",
    ExitCode.UNREACHABLE: "Kafka or the worker did not answer (unreachable or timed out)",
    ExitCode.WORKER_ERROR: "the worker answered with an HTTP error (status in the message)",
    ExitCode.SEND_FAILED: "Kafka refused records while sending",
    ExitCode.STATE: "Redis holds state of an unknown layout (see the message)",
    ExitCode.REFUSED: "the ledger refused or found problems: open or partial days, a "
                      "mismatch, a day that cannot close yet (the message names them)",
    ExitCode.UNSUPPORTED: "this build cannot do that yet (the message says what is missing)",
    ExitCode.NO_TOPIC: "a Kafka topic the command sends to does not exist (the message "
                       "names it and how to create it)",
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C)",
}


class CommandFailed(Exception):
    """A failure the user can act on: one line of text and an exit code."""

    def __init__(self, code: ExitCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def exit_code_table() -> str:
    """The exit codes as lines for ``--help``."""
    return "\n".join(f"  {int(code):>3}  {text}" for code, text in EXIT_CODE_MEANINGS.items())
