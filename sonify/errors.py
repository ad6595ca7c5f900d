"""The one exception type whose message is meant for the person at the keyboard."""


class SonifyError(Exception):
    """A problem the user can fix; its message is one line that says what and how.

    The command line prints ``error: <message>`` and exits with status 2, never a traceback.
    """


class Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an exception so that every exit path silences the outputs."""
