"""The one error type of emo_mm's user-facing checks.

Every check of something a user gave (a config, a command-line value, a
checkpoint, a data set, an output folder) raises :class:`UserError` with a
message that names the bad value and what is allowed. The tools print it as
one ``error:`` line instead of a traceback. It is a ``ValueError``, so code
that calls the library directly can catch it as one.
"""


class UserError(ValueError):
    """A bad input, reported in one line that names it."""


class CheckpointRefused(UserError):
    """A checkpoint needs more than weights-only unpickling allows, or its
    download does not match the known digest."""


def run_tool(main, *args) -> None:
    """Run a tool's ``main(*args)``; a :class:`UserError` ends the process
    with exit status 1 and one ``error: ...`` line on stderr, no traceback.
    """
    import sys
    try:
        main(*args)
    except UserError as err:
        sys.exit(f'error: {err}')
