"""Live performance: the Score played in real time to MIDI ports, live audio and OSC."""
