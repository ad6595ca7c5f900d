"""Stage 4b, podcast interludes: a finished piece of an exact length.

Composes the others: takes Frames, a preset and optionally a spoken reading (``speech``:
espeak-ng through ctypes, or a recording with its transcript); maps the Frames on the
reading's clock, renders with the synthesizer, ducks the music under the voice, and masters
to the length and loudness asked (``piece``). Gives the finished samples and the Score;
writing them is the command line's job, through ``sonify.outputs``.
"""
