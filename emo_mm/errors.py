"""The one error type of emo_mm's user-facing checks.

Every check of something a user gave (a config, an argument, a checkpoint,
a data set, an output folder) raises :class:`UserError` with a message that
names the bad value and what is allowed. The library names its arguments as
Python spells them (``force=True``, ``atol=``); the tools print the message
as one ``error:`` line, no traceback, with those spellings replaced by their
flags. It is a ``ValueError``, so code that calls the library directly can
catch it as one.
"""


class UserError(ValueError):
    """A bad input, reported in one line that names it."""


class CheckpointRefused(UserError):
    """A checkpoint needs more than weights-only unpickling allows, or its
    download does not match the known digest."""


def run_tool(main, *args, flags=None) -> None:
    """Run a tool's ``main(*args)``; a :class:`UserError` ends the process
    with exit status 1 and one ``error: ...`` line on stderr, no traceback.

    ``flags`` maps the library's spelling of an argument in messages to the
    tool's flag, e.g. ``{'force=True': '--force', 'atol=': '--atol '}``.
    """
    import sys
    try:
        main(*args)
    except UserError as err:
        message = str(err)
        for argument, flag in (flags or {}).items():
            message = message.replace(argument, flag)
        sys.exit(f'error: {message}')
