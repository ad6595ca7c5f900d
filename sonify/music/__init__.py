"""Stage 2, the music: Frames in, a Score out.

Takes Frames (``sonify.model.frame``, and nothing else of the model) and a preset;
gives a Score (``score.py``): timed notes, controls, text cues and rests with a tempo
map. The signals read from the Frames and their scaling (``signals``), keys and scales
(``scales``), presets as validated dataclasses (``preset``, with the shipped TOML files
in ``presets/``), the mapping itself (``mapping``) and its legend (``explain``).

Pure: no I/O beyond reading preset files, no clocks, no devices. The same Frames and
preset always give the same Score.
"""
