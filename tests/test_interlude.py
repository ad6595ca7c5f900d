"""Podcast interludes: exact length, loudness and true peak measured by tools we did not
write, a voice the music ducks under and follows word by word, a musical ending."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pyloudnorm
import pytest
import soundfile
from scipy.signal import resample_poly
from traces import POEM, read

from sonify import load_preset
from sonify.interlude.piece import InterludeSettings, fit_reading, make_interlude, reading_length, reading_room, token_chars
from sonify.interlude.speech import espeak, recording
from sonify.music.scales import key_pitch_class

SR = 48000


def true_peak(audio: np.ndarray) -> float:
    return 20 * math.log10(np.abs(resample_poly(audio.astype(np.float64), 4, 1, axis=0)).max())


def rms_db(x: np.ndarray) -> float:
    return 10 * math.log10(float(np.mean(np.square(x, dtype=np.float64))) + 1e-20)


@pytest.fixture(scope="module")
def speech():
    return espeak(POEM)


@pytest.fixture(scope="module")
def spoken(speech):
    return make_interlude(read(POEM), load_preset("podcast"), InterludeSettings(20.0), speech=speech)


def test_exact_length_loudness_and_true_peak(spoken):
    assert spoken.audio.shape == (20 * SR, 2) and spoken.sample_rate == SR
    assert abs(pyloudnorm.Meter(SR).integrated_loudness(spoken.audio.astype(np.float64)) + 16.0) <= 0.5
    assert true_peak(spoken.audio) <= -1.0
    assert np.abs(spoken.audio).max() <= 10 ** (-1 / 20)


@pytest.mark.parametrize("seconds,lufs", [(13.337, -23.0), (30.0, -14.0)])
def test_without_a_voice_any_length_and_target(seconds, lufs):
    piece = make_interlude(read(POEM), load_preset("podcast"), InterludeSettings(seconds, loudness=lufs))
    assert piece.audio.shape[0] == round(seconds * SR)
    assert abs(pyloudnorm.Meter(SR).integrated_loudness(piece.audio.astype(np.float64)) - lufs) <= 0.5
    assert true_peak(piece.audio) <= -1.0


def test_fades_and_a_resolved_ending(spoken):
    audio = spoken.audio
    assert rms_db(audio[: SR // 100]) < rms_db(audio[SR : 2 * SR]) - 30  # fade-in
    assert rms_db(audio[-SR // 20 :]) < -60  # faded out to silence at the very end
    preset = load_preset("podcast")
    melody = spoken.score.notes_of("melody")
    assert melody[-1].pitch % 12 == key_pitch_class(preset.music.key)  # the last note is the tonic
    last_token_end = max(c.time + c.duration for c in spoken.score.cues)
    assert melody[-1].time >= last_token_end - 1e-6


def test_music_ducks_under_the_voice_and_swells_in_the_gaps(spoken):
    ducked = spoken.music * spoken.duck_gain[:, None]
    for word in spoken.words:
        a, b = int(word.start * SR), int(word.end * SR)
        assert rms_db(ducked[a:b]) <= rms_db(spoken.music[a:b]) - 6.0, word
    after = int((spoken.words[-1].end + 0.8) * SR)
    gap = slice(after, after + SR)
    assert rms_db(ducked[gap]) >= rms_db(spoken.music[gap]) - 0.5


def test_each_word_sounds_with_its_first_note(spoken):
    first_note = {}
    for note in spoken.score.notes_of("melody"):
        first_note.setdefault(note.token, note.time)
    spans = token_chars(spoken.frames)
    checked = 0
    for word in spoken.words:
        tokens = [i for i, (a, b) in enumerate(spans) if a < word.char_end and b > word.char_start and i in first_note]
        if tokens:
            assert abs(min(first_note[i] for i in tokens) - word.start) <= 0.050, word
            checked += 1
    assert checked >= 0.8 * len(spoken.words)


def test_a_reading_too_long_for_the_duration_is_refused(speech):
    from sonify.errors import SonifyError

    with pytest.raises(SonifyError, match="too long for a 8 s interlude"):
        make_interlude(read(POEM), load_preset("podcast"), InterludeSettings(8.0), speech=speech)


TWO_LINES = "Rough winds do shake the darling buds of May,\nAnd summer's lease hath all too short a date.\n"  # 18 words


@pytest.mark.parametrize("seconds", [6.0, 7.0, 8.0, 9.0])
def test_a_reading_cut_to_fit_is_one_the_piece_takes(seconds):
    """A reading cut at a word to fit the piece fits by the piece's own measure (the two once
    measured differently: 10 of 18 words kept for 8 s, then refused as too long for 8 s)."""
    whole = espeak(TWO_LINES)
    settings = InterludeSettings(seconds)
    assert reading_length(whole) > reading_room(settings)
    cut = fit_reading(whole, espeak, reading_room(settings))
    assert cut is not None and 0 < len(cut.words) < len(whole.words)
    assert reading_length(cut) <= reading_room(settings)
    assert TWO_LINES.startswith(cut.text) and cut.text.split() == TWO_LINES.split()[: len(cut.text.split())]


def test_a_reading_that_cannot_fit_at_all_is_none():
    assert fit_reading(espeak(TWO_LINES), espeak, 0.05) is None


def run(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "sonify", "interlude", *map(str, args)], capture_output=True, text=True, timeout=300, env=env
    )


def test_cli_spoken_interlude_files(tmp_path):
    poem = tmp_path / "poem.txt"
    poem.write_text(POEM)
    done = run("--read", poem, "--duration", "20", "--speak", "--lufs", "-16", "--out", tmp_path)
    assert done.returncode == 0, done.stderr
    info = soundfile.info(tmp_path / "poem-interlude.wav")
    assert info.samplerate == SR and info.frames == 20 * SR
    words = json.loads((tmp_path / "poem-interlude.words.json").read_text())["words"]
    chapters = json.loads((tmp_path / "poem-interlude.chapters.json").read_text())["chapters"]
    assert [c["title"] for c in chapters] == [line for line in POEM.splitlines() if line]
    assert chapters[0]["startTime"] == words[0]["start"]
    import srt

    subs = list(srt.parse((tmp_path / "poem-interlude.srt").read_text()))
    assert subs[0].start.total_seconds() == pytest.approx(words[0]["start"], abs=0.002)


def test_cli_reads_what_fits_and_says_so(tmp_path):
    poem = tmp_path / "poem.txt"
    poem.write_text(TWO_LINES)
    done = run("--read", poem, "--duration", "8", "--speak", "--out", tmp_path)
    assert done.returncode == 0, done.stderr
    kept = int(done.stderr.split("read the first ", 1)[1].split(" of 18 words to fit 8 s", 1)[0])
    words = json.loads((tmp_path / "poem-interlude.words.json").read_text())["words"]
    assert [w["text"].strip(",.") for w in words] == [w.strip(",.") for w in TWO_LINES.split()[:kept]]
    settings = InterludeSettings(8.0)
    # on the piece's timeline: the voice enters after the fade-in and ends within the room it has
    assert words[-1]["end"] <= words[0]["start"] + reading_room(settings) + 0.01
    assert words[-1]["end"] <= settings.duration - settings.fade_out - 0.5 + 0.01


def test_missing_espeak_is_one_line_and_a_voice_file_still_works(tmp_path, speech):
    env = {**os.environ, "SONIFY_ESPEAK_LIBRARY": "/nonexistent/libespeak-ng.so.1"}
    poem = tmp_path / "poem.txt"
    poem.write_text(POEM)
    done = run("--read", poem, "--duration", "20", "--speak", "--out", tmp_path, env=env)
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "apt-get install libespeak-ng1" in done.stderr and "--voice-file" in done.stderr
    voice = tmp_path / "voice.wav"
    soundfile.write(voice, speech.audio, speech.sample_rate)
    done = run("--voice-file", voice, "--transcript", poem, "--duration", "20", "--out", tmp_path, "--name", "human", env=env)
    assert done.returncode == 0, done.stderr
    assert soundfile.info(tmp_path / "human.wav").frames == 20 * SR
    words = json.loads((tmp_path / "human.words.json").read_text())["words"]
    assert [w["text"] for w in words] == POEM.split()


def test_recorded_voice_word_times_follow_the_voice(speech):
    took = recording_from(speech)
    # Estimated from where the voice is heard: each word starts within a word's length of espeak's own time.
    for estimated, spoken_word in zip(took.words, speech.words):
        assert abs(estimated.start - spoken_word.start) < 0.6


def recording_from(speech):
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".wav") as f:
        soundfile.write(f.name, speech.audio, speech.sample_rate)
        return recording(f.name, speech.text)


@pytest.mark.parametrize(
    "args,message",
    [
        (["--duration", "0"], "--duration has to be a positive number"),
        (["--duration", "5", "--fade-in", "3", "--fade-out", "3"], "must be shorter than the piece"),
        (["--duration", "20", "--voice-file", "x.wav"], "--voice-file needs --transcript"),
        (["--duration", "20", "--lufs", "-3"], "--lufs has to be in the [-40, -6] interval (LUFS), but is -3"),
    ],
)
def test_bad_input(tmp_path, args, message):
    done = run(*args, "--out", tmp_path)
    assert done.returncode == 2 and message in done.stderr and done.stderr.count("\n") == 1
