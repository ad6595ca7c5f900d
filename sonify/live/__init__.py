"""Stage 4a, live performance: the Score played in real time.

Composes the others: takes a stream of Frames as the model makes them, grows the Score
(``stream``) and schedules its events a fixed latency ahead on one clock (``scheduler``,
``player``) to MIDI ports (``midi``), live audio through our synthesizer (``audio``), OSC
(``osc``) and the terminal (``view``). Every way out of a performance silences what it
started (all notes off).

It never changes what the Score says: live and offline play the same notes.
"""
