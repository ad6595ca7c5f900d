"""Stage 5, the command line: ``sonify trace | render | score | play | panic | interlude |
presets | explain | models``.

Takes the user's flags; builds the settings objects the stages accept and runs them. One
module per command (``trace``, ``render`` with ``score``, ``play`` with ``panic``,
``interlude``, ``info``); each imports the stages it uses only when it runs, so
``sonify --help`` stays fast. The only place that prints to the terminal or exits.
"""

from .main import main

__all__ = ["main"]
