"""The one exception type users see as a one-line message."""


class CAEError(Exception):
    """A problem with the user's input or environment.

    The CLI prints ``error: <message>`` and exits with status 2 instead of a traceback, so the
    message must name what was wrong (file, key, value) and what is expected instead.
    """
