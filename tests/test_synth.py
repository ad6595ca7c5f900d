"""The synthesizer: block-size invariance, clean note edges, the master chain's loudness and
true peak (measured by pyloudnorm and an independent 4x oversampling), files read back."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pyloudnorm
import pytest
import soundfile
from scipy.signal import resample_poly
from traces import POEM, read

from sonify.errors import SonifyError
from sonify.music.mapping import make_score
from sonify.music.preset import load_preset, preset_names
from sonify.music.score import Control, Note, Score, TempoMap, VoiceInfo, sort_controls, sort_notes
from sonify.outputs.audio import write_audio
from sonify.synth import SynthEngine, render_audio
from sonify.synth.master import Limiter, integrated_loudness, master
from sonify.synth.soundfont import render_soundfont
from sonify.synth.voice import ToneCache

SR = 48000


def true_peak(audio: np.ndarray) -> float:
    """dBTP by 4x oversampling (scipy's polyphase resampler, not our limiter's interpolator)."""
    return 20 * math.log10(np.abs(resample_poly(audio.astype(np.float64), 4, 1, axis=0)).max())


@pytest.fixture(scope="module")
def poem_score():
    return make_score(read(POEM), load_preset("default"))


def test_blocks_of_64_and_one_block_give_the_same_samples(poem_score):
    preset = load_preset("default")
    seconds = 8.0
    total = int(seconds * SR)
    whole = SynthEngine.for_score(poem_score, preset.synth).process(total)
    engine = SynthEngine.for_score(poem_score, preset.synth)
    small = np.concatenate([engine.process(64) for _ in range(total // 64)])
    assert np.abs(whole).max() > 0.01
    np.testing.assert_allclose(small, whole, rtol=0, atol=1e-6)
    # and the pipelined offline blocks, of an odd size
    engine = SynthEngine.for_score(poem_score, preset.synth)
    piped = np.concatenate(list(engine.blocks(total, 10007)))
    np.testing.assert_allclose(piped, whole, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", ["podcast", "pulse"])
def test_blocks_in_two_threads_give_the_bytes_of_process_in_one(name):
    """``blocks`` makes the next block's voices in a worker thread while this block's effects
    run: the same bytes as ``process`` in one thread, block by block at the same size."""
    preset = load_preset(name)
    score = make_score(read(POEM), preset)
    total, size = 12 * SR, 6007
    engine = SynthEngine.for_score(score, preset.synth)
    alone = np.concatenate([engine.process(min(size, total - k)) for k in range(0, total, size)])
    shared = np.concatenate(list(SynthEngine.for_score(score, preset.synth).blocks(total, size)))
    assert len(SynthEngine.for_score(score, preset.synth).voices) > 2
    assert np.abs(alone).max() > 0.01
    assert shared.shape == alone.shape and shared.tobytes() == alone.tobytes()


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_renders_to_target_loudness_under_the_ceiling(name):
    preset = load_preset(name)
    score = make_score(read(POEM), preset)
    audio = render_audio(score, preset.synth)
    assert audio.dtype == np.float32 and audio.shape[1] == 2
    assert np.isfinite(audio).all()
    ceiling = 10 ** (preset.synth.ceiling / 20)
    assert np.abs(audio).max() <= ceiling
    loudness = pyloudnorm.Meter(SR).integrated_loudness(audio.astype(np.float64))
    assert abs(loudness - preset.synth.loudness) <= 0.5, loudness
    assert true_peak(audio) <= preset.synth.ceiling
    # The tail: the music goes on after the last note until the reverb has died away.
    end = int(max(n.time + n.duration for n in score.notes) * SR)
    assert audio.shape[0] > end + SR * preset.synth.reverb_seconds * 0.9
    tail = audio[-SR // 10 :]
    assert 20 * math.log10(np.sqrt(np.mean(tail**2)) + 1e-12) < -60


def test_our_meter_agrees_with_pyloudnorm(poem_score):
    preset = load_preset("default")
    raw = render_audio(poem_score, preset.synth, finish=False)
    ours = integrated_loudness(raw, SR)
    theirs = pyloudnorm.Meter(SR).integrated_loudness(raw.astype(np.float64))
    assert abs(ours - theirs) < 0.1  # pyloudnorm's K-filter is an approximation of the standard's


def single_voice_score(notes: list[tuple[float, float, int]], instrument: str = "sine") -> Score:
    """A Score of one dry voice: (time, duration, pitch) notes."""
    tempo = TempoMap.constant(120.0)
    voice = VoiceInfo("melody", "melody", 0, 0, instrument, 0.0, 0.0, 0.0, 0.0)
    made = [
        Note(t, d, tempo.beats(t), tempo.beats(t + d) - tempo.beats(t), p, 100, "melody", 0, k) for k, (t, d, p) in enumerate(notes)
    ]
    end = max(t + d for t, d, _ in notes) + 0.5
    return Score(sort_notes(made), (), (), (), tempo, (4, 4), (voice,), end)


def dry_settings():
    return dataclasses.replace(load_preset("default").synth, reverb_mix=0.0, delay_feedback=0.0)


def clicks(audio: np.ndarray, highest_hz: float) -> int:
    """Samples whose second difference is larger than a smooth note can make: each is a click.

    For x = A(t) sin(wt) with an envelope that rises no faster than over the 2 ms attack
    (a = 96 samples), |x''| <= A (w^2 + 2w/a + 1/a) per sample; a step of a few percent
    of A breaks that bound by far."""
    x = audio[:, 0].astype(np.float64)
    d2 = np.abs(np.diff(x, 2))
    omega, attack = 2 * np.pi * highest_hz / SR, 0.002 * SR
    bound = 1.5 * np.abs(x).max() * (omega**2 + 2 * omega / attack + 1 / attack)
    return int((d2 > bound).sum())


def test_no_clicks_at_starts_ends_steals_and_retriggers():
    notes = [(0.1 + 0.05 * k, 0.4, 57 + (k % 5)) for k in range(24)]  # over the polyphony limit, retriggers
    notes += [(2.0, 0.001, 69), (2.2, 0.3, 69), (2.25, 0.3, 69)]  # a 1 ms note; a note struck again
    audio = SynthEngine.for_score(single_voice_score(notes), dry_settings()).process(int(3.2 * SR))
    assert np.abs(audio).max() > 0.05
    assert clicks(audio, highest_hz=2 * 440.0) == 0


def test_the_click_detector_finds_a_click():
    audio = SynthEngine.for_score(single_voice_score([(0.1, 0.5, 60)]), dry_settings()).process(SR)
    broken = audio.copy()
    broken[int(0.3 * SR) :, :] *= 0.9  # a 10 % step in level
    assert clicks(audio, 2 * 262.0) == 0 and clicks(broken, 2 * 262.0) > 0


def test_notes_start_on_their_exact_sample():
    for start in (0.25, 0.2500208, 0.7000104):
        audio = SynthEngine.for_score(single_voice_score([(start, 0.2, 69)], "pluck"), dry_settings()).process(SR)
        first = int(np.flatnonzero(np.abs(audio[:, 0]) > 0)[0])
        assert first == round(start * SR) + 1  # the attack starts from zero at the note's own sample


def test_reverb_tail_continues_across_blocks():
    settings = dataclasses.replace(load_preset("default").synth, reverb_mix=0.5, reverb_seconds=2.0)
    score = single_voice_score([(0.0, 0.2, 64)], "keys")
    score = dataclasses.replace(score, voices=(dataclasses.replace(score.voices[0], reverb=1.0),))
    total = 3 * SR
    whole = SynthEngine.for_score(score, settings).process(total)
    engine = SynthEngine.for_score(score, settings)
    blocks = np.concatenate([engine.process(512) for _ in range(total // 512)])
    np.testing.assert_allclose(blocks, whole[: blocks.shape[0]], atol=1e-6)
    note_end = int((0.2 + 0.35) * SR)  # gate plus the keys' release
    tail = blocks[note_end + SR // 10 : note_end + SR // 2]
    assert np.sqrt(np.mean(tail**2)) > 1e-4  # the reverb rings on after the note stopped
    late = blocks[-SR // 4 :]
    assert np.sqrt(np.mean(late**2)) < np.sqrt(np.mean(tail**2))  # and decays


def test_limiter_blocks_and_edge_shapes():
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((SR, 2)) * 0.6).astype(np.float32)
    one = Limiter(SR, -1.0)
    whole = np.concatenate([one.process(x), one.flush()])
    many = Limiter(SR, -1.0)
    parts = [many.process(x[i : i + 64]) for i in range(0, SR, 64)] + [many.process(x[:0]), many.flush()]
    assert np.array_equal(np.concatenate(parts), whole)  # any blocks, the same samples
    assert Limiter(SR, -1.0).process(x[:1]).shape == (1, 2)
    assert np.abs(whole).max() <= 10 ** (-1 / 20)
    assert true_peak(whole) <= -1.0


def test_master_of_silence_is_silence():
    assert not master(np.zeros((SR, 2), dtype=np.float32), SR, -16.0, -1.0).any()


@pytest.mark.parametrize(
    "suffix,subtype", [(".wav", "PCM_16"), (".wav", "PCM_24"), (".wav", "FLOAT"), (".flac", "PCM_16"), (".flac", "PCM_24")]
)
@pytest.mark.parametrize("rate", [44100, 48000])
def test_audio_files_read_back(tmp_path, poem_score, suffix, subtype, rate):
    preset = load_preset("default")
    audio = render_audio(poem_score, preset.synth, sample_rate=rate)
    path = write_audio(tmp_path / f"piece{suffix}", audio, rate, subtype)
    data, sr = soundfile.read(path, dtype="float32")
    info = soundfile.info(path)
    assert sr == rate and info.subtype == subtype and data.shape == audio.shape
    assert np.abs(data - audio).max() < (1e-4 if subtype == "PCM_16" else 1e-6)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_bad_audio_outputs_are_clear_errors(tmp_path):
    audio = np.zeros((100, 2), dtype=np.float32)
    with pytest.raises(SonifyError, match=r"use \.wav or \.flac"):
        write_audio(tmp_path / "piece.mp3", audio, SR)
    with pytest.raises(SonifyError, match="FLAC cannot hold FLOAT"):
        write_audio(tmp_path / "piece.flac", audio, SR, "FLOAT")
    with pytest.raises(SonifyError, match="use 44100 or 48000"):
        write_audio(tmp_path / "piece.wav", audio, 22050)
    with pytest.raises(SonifyError, match="cannot write"):
        write_audio(tmp_path / "missing" / "piece.wav", audio, SR)
    assert not list(tmp_path.iterdir())


def test_soundfont_engine_plays_the_same_score(poem_score):
    font = "/usr/share/sounds/sf2/TimGM6mb.sf2"
    import os

    if not os.path.exists(font):
        if os.environ.get("CI") == "true":
            pytest.fail("the TimGM6mb SoundFont is missing (apt-get install timgm6mb-soundfont)")
        pytest.skip("no TimGM6mb SoundFont")
    preset = load_preset("default")
    audio = render_soundfont(poem_score, font, preset.synth)
    assert np.isfinite(audio).all() and audio.shape[1] == 2
    assert abs(pyloudnorm.Meter(SR).integrated_loudness(audio.astype(np.float64)) - preset.synth.loudness) <= 0.5
    # The first melody note sounds where the Score puts it.
    first = min(n.time for n in poem_score.notes)
    onset = np.flatnonzero(np.abs(audio[:, 0]) > 1e-3)[0] / SR
    assert abs(onset - first) < 0.03
    with pytest.raises(SonifyError, match="does not exist"):
        render_soundfont(poem_score, "/nonexistent.sf2", preset.synth)


def test_streamed_master_is_the_master_of_the_whole_array(poem_score):
    """The limiter gives the same samples whatever the blocks (its moving average sums each
    window on its own), so the streamed render, block by block, is exactly the master chain
    run on the whole raw mix in one block; here with the limiter working hard."""
    from sonify.synth.master import Collect, master_passes
    from sonify.synth.render import render_to

    preset = load_preset("pulse")
    raw = render_audio(make_score(read(POEM), preset), preset.synth, finish=False)
    loud = preset.synth.loudness + 6.0  # loud enough that the limiter works hard
    whole = Collect()
    master_passes(lambda: [raw], SR, loud, -1.0, [whole])
    for size in (4801, 65536):
        blocks = Collect()
        master_passes(lambda size=size: (raw[i : i + size] for i in range(0, len(raw), size)), SR, loud, -1.0, [blocks])
        assert np.array_equal(blocks.audio(), whole.audio())
    assert np.array_equal(master(raw, SR, loud, -1.0), whole.audio())
    # A render makes its mix again for the second pass, or keeps a short one: the same samples.
    again, kept = Collect(), Collect()
    score = make_score(read(POEM), preset)
    render_to(score, preset.synth, [again], keep_bytes=0)
    render_to(score, preset.synth, [kept])
    assert np.array_equal(again.audio(), kept.audio())
    assert true_peak(whole.audio()) <= -1.0
    assert abs(integrated_loudness(whole.audio(), SR) - loud) <= 0.5


@pytest.mark.parametrize("burst", [None, 2.5])
def test_heard_loudness_is_the_loudness_of_the_output(burst):
    """The second pass measures its output only from where the limiter first acts (before
    that the output is the mix times the gain, which the first pass measured): its figure is
    the output's loudness all the same, whether the limiter acts mid-piece or never."""
    from sonify.synth.master import Collect, Limiter, LoudnessMeter, _Heard, _limited, _pass

    rng = np.random.default_rng(1)
    mix = (0.05 * rng.standard_normal((5 * SR, 2))).astype(np.float32)
    if burst is not None:
        at = int(burst * SR)
        mix[at : at + 480 : 48] = 0.9  # clicks far above the noise: the limiter acts
    blocks = [mix[i : i + 40000] for i in range(0, len(mix), 40000)]
    first, marks = LoudnessMeter(SR), []
    for block in blocks:
        marks.append((first.position, first.mark()))
        first.process(block)
    gain = np.float32(10.0 ** ((-16.0 - first.loudness()) / 20.0))
    limiter, out = Limiter(SR, -1.0), Collect()
    heard = _Heard(first, marks, float(gain), limiter)
    _pass(_limited(blocks, gain, limiter), [out], heard)
    assert limiter.engaged == (burst is not None)
    assert (heard.meter is None) == (burst is None)
    assert abs(heard.loudness() - integrated_loudness(out.audio(), SR)) < 1e-4


def controlled_organ_score(pitch: int = 48) -> Score:
    """One organ note 2 s long whose three stops jump to new values every 50 ms."""
    tempo = TempoMap.constant(120.0)
    voice = VoiceInfo("layers", "layers", 0, 0, "organ", 0.0, 0.0, 0.0, 0.0, controllers=(20, 21, 22))
    note = Note(0.1, 2.0, 0.2, 4.0, pitch, 90, "layers", 0, 0)
    values = np.random.default_rng(0).integers(0, 128, size=(30, 3))
    controls = [
        Control(0.2 + 0.05 * k, tempo.beats(0.2 + 0.05 * k), 20 + j, int(values[k, j]), "layers", 0, k)
        for k in range(30)
        for j in range(3)
    ]
    return Score((note,), sort_controls(controls), (), (), tempo, (4, 4), (voice,), 2.5)


def test_control_changes_glide_without_steps():
    """A stop that jumps glides over 20 ms, sample by sample and with a smooth slope: the
    organ's output has no sample a step in level would make (a curve read every 32 samples
    and held made dozens)."""
    score = controlled_organ_score()
    audio = SynthEngine.for_score(score, dry_settings()).process(int(2.4 * SR))
    assert np.abs(audio).max() > 0.05
    assert clicks(audio, highest_hz=3 * 131.0) == 0
    lanes = SynthEngine.for_score(score, dry_settings()).lanes
    curve = lanes.curve("layers", 20, 0, int(2.4 * SR)).astype(np.float64)
    glide = 0.02 * SR
    assert np.abs(np.diff(curve)).max() <= 1.5 / glide * 1.01  # the steepest a smoothstep over 20 ms rises
    # and read in pieces, the same curve
    pieces = np.concatenate([lanes.curve("layers", 20, s, 1000) for s in range(0, int(2.4 * SR), 1000)])
    np.testing.assert_array_equal(pieces[: curve.size], curve.astype(np.float32))


@pytest.mark.parametrize("instrument,pitch", [("bell", 96), ("keys", 100), ("pluck", 100), ("pulse", 100)])
def test_oscillators_have_no_aliases(instrument, pitch):
    """FM: the modulation index is limited per note so that no sideband that matters lies
    past Nyquist; saw and square: wavetables of the harmonics below Nyquist. Everything off
    the note's harmonic grid is 60 dB below its loudest partial."""
    settings = dataclasses.replace(dry_settings(), brightness=1.0)
    points = 32768
    audio = SynthEngine.for_score(single_voice_score([(0.0, 1.0, pitch)], instrument), settings).process(points)
    x = audio[:, 0].astype(np.float64)
    power = np.abs(np.fft.rfft(x * np.blackman(points))) ** 2  # sidelobes below -58 dB, falling fast
    freqs = np.fft.rfftfreq(points, 1 / SR)
    f0 = 440.0 * 2 ** ((pitch - 69) / 12)
    grid = f0 / 2  # the bell's modulator is at 3.5x: its sidebands fall on multiples of f0 / 2
    off = np.abs(freqs - np.round(freqs / grid) * grid) > 8 * SR / points
    assert 10 * np.log10(power[off].max() / power.max()) < -60


@pytest.mark.parametrize("instrument", ["bell", "keys"])
def test_fm_notes_keep_their_power_under_16_khz(instrument):
    """An FM note's index is limited so that at its peak no more than -45 dB of its power lies
    above 16 kHz (the mix's goal is -40 dB): a loud bright bell put up to -33 dB there, keys
    up to -31 dB, and glitch's sparse mix came within 2-4 dB of the goal."""
    settings = dataclasses.replace(dry_settings(), brightness=1.0)
    points = 8192  # the first 0.17 s: the index at its peak
    worst = -np.inf
    for pitch in range(60, 109):
        score = single_voice_score([(0.0, 0.5, pitch)], instrument)
        score = dataclasses.replace(score, notes=tuple(dataclasses.replace(n, velocity=127) for n in score.notes))
        x = SynthEngine.for_score(score, settings).process(points)[:, 0].astype(np.float64)
        power = np.abs(np.fft.rfft(x * np.hanning(points))) ** 2
        top = power[np.fft.rfftfreq(points, 1 / SR) > 16000.0].sum() / power.sum()
        worst = max(worst, 10 * np.log10(top))
    assert worst < -43.0, worst


def test_a_tone_held_across_chord_changes_is_not_stolen():
    """Over the polyphony limit (the organ's is 8) the notes in their release give way
    first: a common tone held across chord changes sounds on to its end."""
    held = (0.1, 2.9, 60)
    chords = [(0.1 + 0.5 * k, 0.5, p + k) for k in range(5) for p in (40, 44, 47, 51, 55, 64, 67)]
    score = single_voice_score([held] + chords, "organ")
    engine = SynthEngine(dry_settings(), score.tempo.changes[0].bpm, score.voices)
    engine.schedule(score.notes)  # every note up front (for_score takes them as it plays), to see each one's fate
    tone = next(s for _, _, s in engine.pending if s.note.pitch == 60 and s.note.duration == 2.9)
    assert tone.stolen_at is None
    stolen = [s for _, _, s in engine.pending if s.stolen_at is not None]
    assert stolen and all(s.stolen_at >= s.gate for s in stolen)  # only released notes made room


@pytest.mark.parametrize("controlled", [False, True])
def test_notes_taken_up_front_play_as_for_score_plays_them(controlled):
    """``for_score`` takes each note up as its block comes; scheduled all up front, in the
    Score's order, the notes steal the same notes and sound the same samples. (The steal test
    above and benchmarks/audio_quality.py's held tones look at the notes' fates that way.)"""
    if controlled:
        score = controlled_organ_score()
        score = dataclasses.replace(score, notes=sort_notes(list(score.notes) + [dataclasses.replace(score.notes[0], pitch=55)]))
    else:
        chords = [(0.1 + 0.5 * k, 0.5, p + k) for k in range(5) for p in (40, 44, 47, 51, 55, 64, 67)]
        score = single_voice_score([(0.1, 2.9, 60)] + chords, "organ")
    total = int(3.4 * SR)
    played = SynthEngine.for_score(score, dry_settings()).process(total)
    engine = SynthEngine(dry_settings(), score.tempo.changes[0].bpm, score.voices)
    engine.schedule(score.notes, score.controls)
    if not controlled:
        assert any(s.stolen_at is not None for _, _, s in engine.pending)  # over the organ's polyphony
    assert np.abs(played).max() > 0.01
    np.testing.assert_array_equal(engine.process(total), played)


def test_live_handover_plays_held_tones_and_glides_as_the_offline_render():
    """Live, the player opens each held note at its start and closes it when it ends (ends
    first at a chord change), hands controls over a little ahead, and ``AudioOut`` renders
    blocks of 256 and forgets the control points behind the playhead. A common tone held
    across chord changes (over the organ's polyphony, with stops gliding) sounds as the
    offline render plays it: the same steals, envelope and glides."""
    organ = controlled_organ_score()
    chords = [(0.1 + 0.5 * k, 0.5, p + k) for k in range(4) for p in (40, 44, 47, 51, 55, 64, 67)]
    held = single_voice_score([(0.1, 2.1, 60)] + chords, "organ")
    notes = sort_notes([dataclasses.replace(n, voice="layers") for n in held.notes])
    # The stops' first values come with the first note, as the mapping sends them (before
    # its first point a lane reads its first value, which live has not heard yet).
    first = [Control(0.1, organ.tempo.beats(0.1), 20 + j, 64, "layers", 0, 0) for j in range(3)]
    score = dataclasses.replace(organ, notes=notes, controls=sort_controls(first + list(organ.controls)))
    total = int(2.6 * SR)
    offline = SynthEngine.for_score(score, dry_settings()).process(total)
    live = SynthEngine(dry_settings(), score.tempo.changes[0].bpm, score.voices)
    # (sample, 0 close / 1 open / 2 control, event): a moment's ends before its starts
    events = sorted(
        [(round((n.time + n.duration) * SR), 0, k, n) for k, n in enumerate(score.notes)]
        + [(round(n.time * SR), 1, k, n) for k, n in enumerate(score.notes)]
        + [(round(c.time * SR), 2, k, c) for k, c in enumerate(score.controls)],
        key=lambda e: e[:3],
    )
    lead, blocks = int(0.05 * SR), []
    for b0 in range(0, total, 256):
        while events and events[0][0] < b0 + 256 + lead:
            _, kind, _, event = events.pop(0)
            if kind == 0:
                live.close(event)
            elif kind == 1:
                live.open(dataclasses.replace(event, duration=0.0))
            else:
                live.schedule((), [event])
        blocks.append(live.process(min(256, total - b0)))
        live.lanes.forget_before(live.position)
    assert live.late == 0 and np.abs(offline).max() > 0.01
    np.testing.assert_allclose(np.concatenate(blocks), offline, rtol=0, atol=1e-6)


def test_a_streamed_render_does_not_hold_the_piece(tmp_path):
    """The peak memory (tracemalloc, which sees NumPy's buffers) of rendering a piece into
    its file barely grows with the piece: a piece 50 s longer (20 MB more of float32 stereo,
    which a render holding the whole mix keeps two or three times) peaks within 8 MB."""
    import tracemalloc

    from traces import frame

    from sonify.outputs.audio import AudioFile
    from sonify.outputs.files import OutputSet
    from sonify.synth.render import render_to

    preset = load_preset("default")
    peaks, lengths = [], []
    for tokens in (40, 160):
        score = make_score([frame(i, text=" word", logprob=-1.0 - i % 7) for i in range(tokens)], preset)
        tracemalloc.start()
        try:
            with OutputSet() as files, AudioFile(files, tmp_path / "piece.wav", SR) as audio:
                lengths.append(render_to(score, preset.synth, [audio], keep_bytes=0) / SR)
            peaks.append(tracemalloc.get_traced_memory()[1] / 1e6)
        finally:
            tracemalloc.stop()
        assert soundfile.info(str(tmp_path / "piece.wav")).frames == round(lengths[-1] * SR)
    print(f"peak traced memory: {peaks[0]:.1f} MB for {lengths[0]:.0f} s, {peaks[1]:.1f} MB for {lengths[1]:.0f} s")
    assert lengths[1] - lengths[0] > 50.0
    assert peaks[1] - peaks[0] < 8.0


def test_events_handed_over_after_their_moment_are_counted_as_late():
    """Live, the player hands notes and controls to the synth ahead of the playhead; one that
    comes after its moment was rendered is counted (and the earliest such moment kept), so a
    performance can say its audio left the offline render there. Offline, none is."""
    preset = load_preset("default")
    score = make_score(read(POEM)[:60], preset)
    offline = SynthEngine.for_score(score, preset.synth, sample_rate=48000)
    offline.process(int(score.end * 48000))
    assert offline.late == 0 and offline.first_late is None
    live = SynthEngine(preset.synth, score.tempo.changes[0].bpm, score.voices, sample_rate=48000)
    live.schedule(score.notes[:3], score.controls[:2], offset=48000)  # a second ahead: in time
    live.process(48000 + 4800)
    assert live.late == 0
    late = [n for n in score.notes if n.time > 0.05][:2]
    live.schedule(late, [], offset=0)  # their moments (after 0.05 s) were rendered long ago
    assert live.late == 2 and live.first_late == min(round(n.time * 48000) for n in late)


def test_a_bus_filter_rings_through_silence_then_lets_go_whatever_the_blocks():
    """The voices' bus lowpass over notes with silences between: lfilter's samples while it
    rings (the same floats), exact zeros once its memory is below QUIET instead of float32
    denormals, and the same samples in blocks of any size."""
    from scipy.signal import butter, lfilter

    from sonify.synth.filters import QUIET, lfilter_spans

    b, a = (c.astype(np.float32) for c in butter(2, 300.0 / (SR / 2)))
    x = np.zeros(SR, dtype=np.float32)
    spans = [(1000, 3000), (2500, 4000), (30000, 31000)]
    rng = np.random.default_rng(0)
    for lo, hi in spans:
        x[lo:hi] = rng.standard_normal(hi - lo).astype(np.float32)
    reference, _ = lfilter(b, a, x, zi=np.zeros(2, dtype=np.float32))
    assert ((np.abs(reference) < 1.2e-38) & (reference != 0)).sum() > 1000  # lfilter alone sinks into denormals
    whole, state = lfilter_spans(b, a, x.copy(), np.zeros(2, dtype=np.float32), spans, 0, SR)
    assert not state.any()
    audible = np.abs(reference) >= QUIET
    np.testing.assert_array_equal(whole[audible], reference[audible])
    assert np.abs(whole[~audible]).max() < QUIET
    assert not ((np.abs(whole) < 1.2e-38) & (whole != 0)).any()
    for size in (64, 1000, 7919):
        parts, state = [], np.zeros(2, dtype=np.float32)
        for start in range(0, SR, size):
            frames = min(size, SR - start)
            local = [
                (max(lo, start) - start, min(hi, start + frames) - start) for lo, hi in spans if lo < start + frames and hi > start
            ]
            y, state = lfilter_spans(b, a, x[start : start + frames].copy() if local else None, state, local, start, frames)
            parts.append(np.zeros(frames, dtype=np.float32) if y is None else y)
        np.testing.assert_array_equal(np.concatenate(parts), whole)


def test_the_limiters_quick_check_never_passes_a_block_that_needs_gain():
    """Limiter._clear says a block needs no gain only where _needed_gain finds none, on
    blocks of short high bursts whose peaks lie around the ceiling, most of them only
    between samples."""
    limiter = Limiter(SR, -1.0)
    rng = np.random.default_rng(3)
    held = limiter.input_history.shape[0]
    cleared = between = 0
    for _ in range(300):
        m = int(rng.integers(4096, 20000))
        t = np.arange(held + m)
        wave = np.sin(2 * np.pi * rng.uniform(0.2, 0.49) * t + rng.uniform(0, 6))
        x = (limiter.ceiling * rng.uniform(0.6, 1.05) * wave[:, None] * rng.uniform(0.9, 1.0, 2)).astype(np.float32)
        x *= np.repeat(rng.random(t.size // 40 + 1) < 0.01, 40)[: t.size, None]  # bursts of 40 samples
        needs = limiter._needed_gain(x, m) is not None
        between += needs and np.abs(x).max() <= limiter.ceiling
        if limiter._clear(x, m):
            cleared += 1
            assert not needs
    assert cleared > 100 and between > 20


@pytest.mark.parametrize(
    "instrument", ["sine", "keys", "bell", "pluck", "pulse", "pad", "organ", "drone", "organ stops", "drone level"]
)
def test_notes_sharing_a_tone_play_the_samples_they_would_make_themselves(instrument):
    """Notes of one pitch (and velocity) read one oscillator's samples from the engine's
    ToneCache: the same bytes as each note making its own, whole or in 256-frame blocks,
    and with a cache so small that it keeps 0.1 s per tone and drops tones mid-note."""
    notes = [(0.05 + 0.15 * k, 0.2 + 0.1 * (k % 4), (36, 43, 60)[k % 3]) for k in range(14)]
    score = single_voice_score(notes, instrument.split()[0])
    score = dataclasses.replace(
        score, notes=tuple(dataclasses.replace(n, velocity=(100, 60)[k % 5 == 4]) for k, n in enumerate(score.notes))
    )
    if " " in instrument:  # the organ's stops and the drone's level, moved by controllers
        # (their first values at the start, as the mapping sends them: a lane reads 1 until its first point comes)
        first = [Control(0.0, 0.0, 20 + j, 64, "melody", 0, 0) for j in range(3)]
        controls = first + [dataclasses.replace(c, voice="melody") for c in controlled_organ_score().controls]
        voices = (dataclasses.replace(score.voices[0], controllers=(20, 21, 22)),)
        score = dataclasses.replace(score, controls=sort_controls(controls), voices=voices)
    total = int(3.0 * SR)

    def render(tones: ToneCache | None, block: int) -> np.ndarray:
        engine = SynthEngine.for_score(score, dry_settings())
        engine.tones = tones
        return np.concatenate([engine.process(min(block, total - b0)) for b0 in range(0, total, block)])

    alone = render(None, total)
    assert np.abs(alone).max() > 0.01
    np.testing.assert_array_equal(render(ToneCache(), total), alone)
    small = ToneCache(max_bytes=40000, max_length=int(0.1 * SR))
    np.testing.assert_array_equal(render(small, 256), alone)
    assert 0 < small.bytes <= 40000 + 4 * small.max_length


@pytest.mark.parametrize("name", ["midi-rig", "pulse"])
def test_a_presets_voices_sharing_tones_play_what_they_would_alone(name):
    """The shared tones' keys keep instruments, pitches and velocities apart: a preset with
    every instrument of ours but one (and one with the other) plays the same bytes with the
    cache as without, in the offline blocks and in blocks of 256."""
    preset = load_preset(name)
    score = make_score(read(POEM), preset)
    total = int(8.0 * SR)

    def render(tones: ToneCache | None, block: int) -> np.ndarray:
        engine = SynthEngine.for_score(score, preset.synth)
        engine.tones = tones
        return np.concatenate([engine.process(min(block, total - b0)) for b0 in range(0, total, block)])

    alone = render(None, 65536)
    assert np.abs(alone).max() > 0.01
    np.testing.assert_array_equal(render(ToneCache(), 65536), alone)
    np.testing.assert_array_equal(render(ToneCache(max_bytes=200000, max_length=4800), 256), render(None, 256))


def test_an_echo_no_voice_has_fed_yet_is_left_out_without_changing_a_bit(poem_score):
    # The voices that send to the echo play only from 2 s to 3 s: the blocks before their
    # first note leave the echo out, those after run it from its zeros, and it rings on
    # after their last.
    preset = load_preset("default")
    senders = {v.name for v in poem_score.voices if v.delay > 0}
    notes = [n for n in poem_score.notes if n.voice not in senders or 2.0 <= n.time < 3.0]
    score = dataclasses.replace(poem_score, notes=sort_notes(notes))
    first = min(n.time for n in score.notes if n.voice in senders)
    assert 2.0 <= first < 4.0 and min(n.time for n in score.notes) < 0.5
    total = int((first + 8.0) * SR)
    skipping = SynthEngine.for_score(score, preset.synth)
    audio = np.concatenate([skipping.process(16000) for _ in range(total // 16000)])
    always = SynthEngine.for_score(score, preset.synth)
    always._echo_runs = lambda plan: True  # the echo runs in every block, over its zeros
    reference = np.concatenate([always.process(16000) for _ in range(total // 16000)])
    assert skipping.echo.position == always.echo.position
    assert np.abs(audio[-SR:]).max() > 0.01
    assert audio.tobytes() == reference.tobytes()
