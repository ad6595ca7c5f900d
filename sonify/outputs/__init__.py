"""Stage 3b, the files: what a piece leaves on disk.

Takes a Score (and, for the trace and the plot, the Frames); gives files: the audio
(``audio``: WAV/FLAC), the MIDI file (``midifile``), transcripts (``transcript``: SRT,
WebVTT, LRC, JSON), the trace (``trace``: JSON Lines, which ``sonify score`` reads back),
and the plot (``plot``). ``files`` names output files and writes each atomically.

Never runs the model or the synthesizer: it writes what it is given.
"""
