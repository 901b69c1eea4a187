"""generate_midi / generate_ids: determinism, temperature, prompts, sliding window, grammar."""

from __future__ import annotations

import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest
import symusic
import torch

from hf_music import (
    MidiTokenizer,
    MusicTransformerConfig,
    MusicTransformerForCausalLM,
    PerformanceGrammarLogitsProcessor,
    bundled_prompts,
    generate_ids,
    generate_midi,
)
from hf_music.generation import grammar_violations, prompt_to_ids, sounding_pitches, time_steps
from hf_music.music_transformer.grammar import RELEASE_NATS_PER_SECOND, strike_run

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model():
    # A larger init than GPT-2's 0.02 gives peaked, input-dependent distributions, so
    # sampling controls have a visible effect on an untrained model.
    torch.manual_seed(0)
    config = MusicTransformerConfig.from_preset("tiny", n_positions=128, initializer_range=0.2)
    return MusicTransformerForCausalLM(config).eval()


def token_entropy(rows) -> float:
    ids = np.concatenate([row[1:] for row in rows])
    counts = np.bincount(ids, minlength=391)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def test_fixed_seed_gives_identical_output_and_leaves_global_rng(model, tokenizer):
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = generate_ids(model, tokenizer, max_new_tokens=60, seed=7)
    b = generate_ids(model, tokenizer, max_new_tokens=60, seed=7)
    c = generate_ids(model, tokenizer, max_new_tokens=60, seed=8)
    assert a == b
    assert a != c
    assert torch.equal(torch.get_rng_state(), before)


def test_higher_temperature_gives_higher_entropy(model, tokenizer):
    entropies = [
        token_entropy(
            generate_ids(model, tokenizer, max_new_tokens=100, temperature=t, seed=0, num_return_sequences=4)
        )
        for t in (0.3, 1.0, 2.0)
    ]
    assert entropies[0] + 0.3 < entropies[1] < entropies[2] - 0.3, entropies


def test_temperature_must_be_positive(model, tokenizer):
    for bad in (0, -1.0):
        with pytest.raises(ValueError, match="temperature must be > 0"):
            generate_midi(model, tokenizer, max_new_tokens=4, temperature=bad)


def test_samples_decode_to_valid_midi_files(model, tokenizer, tmp_path):
    scores = generate_midi(
        model, tokenizer, max_new_tokens=150, num_return_sequences=3, seed=1, top_k=50, top_p=0.95
    )
    assert isinstance(scores, list) and len(scores) == 3
    for i, score in enumerate(scores):
        path = tmp_path / f"{i}.mid"
        score.dump_midi(str(path))
        reread = symusic.Score(str(path))
        assert reread.note_num() == score.note_num() > 0
    single = generate_midi(model, tokenizer, max_new_tokens=20, seed=1, min_p=0.05)
    assert isinstance(single, symusic.core.ScoreTick)


def test_prompt_continuation_keeps_the_prompt(model, tokenizer):
    prompt = bundled_prompts()["scarlatti_sonata_k525"]
    prompt_ids = prompt_to_ids(prompt, tokenizer, prompt_seconds=5.0)
    out = generate_ids(model, tokenizer, prompt=prompt, prompt_seconds=5.0, max_new_tokens=80, seed=0)[0]
    assert out[: len(prompt_ids)] == prompt_ids
    assert len(out) == len(prompt_ids) + 80
    prompt_notes = tokenizer.ids_to_notes(prompt_ids)
    assert 4.0 < prompt_notes.onset.max() <= 5.0  # rounded to the 10 ms grid
    end = prompt_notes.offset.max()
    out_notes = tokenizer.ids_to_notes(out)
    early = out_notes.onset < end
    for field in ("onset", "offset", "pitch", "velocity"):
        np.testing.assert_array_equal(getattr(out_notes, field)[early], getattr(prompt_notes, field))
    # prompts given as ids and as a Score continue the same way
    same = generate_ids(model, tokenizer, prompt=prompt_ids, max_new_tokens=80, seed=0)[0]
    assert same == out


def test_sliding_window_goes_past_the_context(model, tokenizer):
    context = model.config.n_positions  # 128
    rows = generate_ids(model, tokenizer, max_new_tokens=3 * context, seed=3, num_return_sequences=2)
    assert [len(r) for r in rows] == [1 + 3 * context] * 2
    assert all(grammar_violations(r, tokenizer) == 0 for r in rows)  # state carried across windows
    notes = tokenizer.ids_to_notes(rows[0])
    assert len(notes) > 0


def test_grammar_constraint_removes_ill_formed_events(model, tokenizer):
    free = generate_ids(
        model, tokenizer, max_new_tokens=200, seed=5, constrained=False, num_return_sequences=2
    )
    constrained = generate_ids(model, tokenizer, max_new_tokens=200, seed=5, num_return_sequences=2)
    assert sum(grammar_violations(r, tokenizer) for r in free) > 10
    assert sum(grammar_violations(r, tokenizer) for r in constrained) == 0


def test_grammar_blocks_notes_off_for_silent_pitches_and_on_for_sounding_ones(tokenizer):
    history = [
        tokenizer.convert_tokens_to_ids(["<bos>", "NOTE_ON_60", "NOTE_ON_64", "TIME_SHIFT_5", "NOTE_OFF_64"])
    ]
    assert np.flatnonzero(sounding_pitches(history[0], tokenizer)).tolist() == [60]
    processor = PerformanceGrammarLogitsProcessor(tokenizer, max_polyphony=None, history=history)
    scores = processor(torch.tensor(history), torch.zeros(1, tokenizer.vocab_size))[0]
    blocked = {
        tokenizer.convert_ids_to_tokens(i) for i in torch.nonzero(torch.isinf(scores)).ravel().tolist()
    }
    assert "NOTE_ON_60" in blocked and "NOTE_OFF_60" not in blocked
    assert "NOTE_OFF_64" in blocked and "NOTE_ON_64" not in blocked
    assert {"<pad>", "<bos>", "<eos>"} <= blocked
    assert not any(t.startswith(("TIME_SHIFT", "VELOCITY")) for t in blocked)
    # a new token updates the state incrementally; a polyphony cap of 1 forbids every NOTE_ON
    capped = PerformanceGrammarLogitsProcessor(tokenizer, max_polyphony=1, allow_eos=True, history=history)
    ids = torch.tensor(history)
    capped(ids, torch.zeros(1, tokenizer.vocab_size))
    ids = torch.cat([ids, torch.tensor([[tokenizer.convert_tokens_to_ids("NOTE_OFF_60")]])], dim=1)
    scores = capped(ids, torch.zeros(1, tokenizer.vocab_size))[0]
    assert not torch.isinf(scores[tokenizer.convert_tokens_to_ids("NOTE_ON_61")])  # nothing sounds now
    assert not torch.isinf(scores[tokenizer.eos_token_id])
    # a model vocabulary padded past the tokenizer's: the extra ids are masked, and one in the input
    # (an unconstrained sample) leaves the state alone
    padded = PerformanceGrammarLogitsProcessor(tokenizer, max_polyphony=None, history=history)
    ids = torch.tensor(history)
    padded(ids, torch.zeros(1, tokenizer.vocab_size + 9))
    scores = padded(torch.cat([ids, torch.tensor([[tokenizer.vocab_size + 4]])], dim=1), torch.zeros(1, 400))[
        0
    ]
    assert torch.isinf(scores[tokenizer.vocab_size :]).all()
    assert torch.isinf(scores[tokenizer.convert_tokens_to_ids("NOTE_ON_60")])  # 60 still sounds


def test_grammar_processor_keeps_each_event_types_probability(tokenizer):
    rows = [
        tokenizer.convert_tokens_to_ids(["<bos>", "NOTE_ON_60", "NOTE_ON_64"]),
        tokenizer.convert_tokens_to_ids(["<bos>", "TIME_SHIFT_10", "VELOCITY_20"]),  # silence
    ]
    scores = torch.randn(2, tokenizer.vocab_size, generator=torch.Generator().manual_seed(0))
    processed = PerformanceGrammarLogitsProcessor(tokenizer, history=rows)(torch.tensor(rows), scores)

    def mass(logits, first, last):
        return torch.softmax(logits, dim=-1)[:, first:last].sum(dim=-1)

    on, off, shift = tokenizer.note_on_offset, tokenizer.note_off_offset, tokenizer.time_shift_offset
    before = torch.softmax(scores, dim=-1)
    dropped = before[:, :on].sum(dim=-1)  # specials in both rows...
    dropped[1] += before[1, off:shift].sum()  # ...and every NOTE_OFF of the silent row
    # Renormalised without what is dropped, each event type keeps its share of the probability:
    # row 0 may release only 60 and 64, and they carry all the NOTE_OFF mass.
    for first, last in ((on, off), (shift, tokenizer.vocab_size)):
        assert torch.allclose(mass(processed, first, last), mass(scores, first, last) / (1 - dropped))
    assert torch.allclose(mass(processed, off, shift)[0], mass(scores, off, shift)[0] / (1 - dropped[0]))
    allowed_offs = torch.nonzero(torch.isfinite(processed[0, off:shift])).ravel().tolist()
    assert allowed_offs == [60, 64]
    assert mass(processed, off, shift)[1] == 0


def allowed_events(processor, tokenizer, tokens, steps=()):
    """Names of the events left allowed after `tokens`, then after each of `steps` in turn."""
    ids = torch.tensor([tokenizer.convert_tokens_to_ids(tokens)])
    scores = processor(ids, torch.zeros(1, tokenizer.vocab_size))
    for token in steps:
        ids = torch.cat([ids, torch.tensor([[tokenizer.convert_tokens_to_ids(token)]])], dim=1)
        scores = processor(ids, torch.zeros(1, tokenizer.vocab_size))
    return {
        tokenizer.convert_ids_to_tokens(i) for i in torch.nonzero(~torch.isinf(scores[0])).ravel().tolist()
    }


def test_grammar_processor_limits_silence(tokenizer):
    processor = PerformanceGrammarLogitsProcessor(tokenizer, max_silence_seconds=2.0, max_note_seconds=None)
    # 1.5 s of silence after <bos>: shifts of up to 0.5 s are left, longer ones are masked.
    allowed = allowed_events(processor, tokenizer, ["<bos>"], ["TIME_SHIFT_100", "TIME_SHIFT_50"])
    assert "TIME_SHIFT_50" in allowed and "TIME_SHIFT_51" not in allowed and "NOTE_ON_60" in allowed
    # At the limit no shift is left: the model must play. A note resets the count.
    processor = PerformanceGrammarLogitsProcessor(tokenizer, max_silence_seconds=2.0, max_note_seconds=None)
    allowed = allowed_events(processor, tokenizer, ["<bos>"], ["TIME_SHIFT_100", "TIME_SHIFT_100"])
    assert not any(t.startswith("TIME_SHIFT") for t in allowed) and "NOTE_ON_60" in allowed
    processor = PerformanceGrammarLogitsProcessor(tokenizer, max_silence_seconds=2.0, max_note_seconds=None)
    steps = ["TIME_SHIFT_100", "TIME_SHIFT_100", "NOTE_ON_60", "TIME_SHIFT_100", "NOTE_OFF_60"]
    assert "TIME_SHIFT_100" in allowed_events(processor, tokenizer, ["<bos>"], steps)


def test_grammar_processor_releases_notes_held_too_long(tokenizer):
    processor = PerformanceGrammarLogitsProcessor(tokenizer, max_silence_seconds=None, max_note_seconds=8.0)
    held = ["NOTE_ON_60", "NOTE_ON_64", *["TIME_SHIFT_100"] * 7, "TIME_SHIFT_50"]  # 7.5 s
    allowed = allowed_events(processor, tokenizer, ["<bos>"], held)
    assert "TIME_SHIFT_50" in allowed and "TIME_SHIFT_51" not in allowed  # no shift past 8 s
    processor = PerformanceGrammarLogitsProcessor(tokenizer, max_silence_seconds=None, max_note_seconds=8.0)
    # 60 struck at 0 s and 64 at 1 s: at 8 s only 60's release is allowed; once it is off, 64 has 1 s left.
    held = ["NOTE_ON_60", "TIME_SHIFT_100", "NOTE_ON_64", *["TIME_SHIFT_100"] * 7]
    assert allowed_events(processor, tokenizer, ["<bos>"], held) == {"NOTE_OFF_60"}
    allowed = allowed_events(processor, tokenizer, ["<bos>"], [*held, "NOTE_OFF_60"])
    assert "NOTE_OFF_64" in allowed and "TIME_SHIFT_100" in allowed and "TIME_SHIFT_1" in allowed


def test_pitch_temperature_tempers_which_pitch_not_when_or_how_loud(tokenizer):
    ids = torch.tensor([tokenizer.convert_tokens_to_ids(["<bos>", "NOTE_ON_60"])])
    scores = torch.randn(1, tokenizer.vocab_size, generator=torch.Generator().manual_seed(1)) * 3
    plain = PerformanceGrammarLogitsProcessor(tokenizer, history=ids.tolist())(ids, scores)
    tempered = PerformanceGrammarLogitsProcessor(tokenizer, history=ids.tolist(), pitch_temperature=0.5)(
        ids, scores
    )
    on, off = tokenizer.note_on_offset, tokenizer.note_off_offset
    p_plain, p_tempered = torch.softmax(plain, -1)[0], torch.softmax(tempered, -1)[0]
    # Every event outside NOTE_ON keeps its probability, so the NOTE_ONs keep their total...
    assert torch.allclose(p_tempered[off:], p_plain[off:], atol=1e-6)
    assert torch.isclose(p_tempered[on:off].sum(), p_plain[on:off].sum(), atol=1e-6)
    # ...and among them the pitches follow the model's logits at temperature 0.5 (60 still sounds: masked).
    expected = torch.softmax(plain[0, on:off] / 0.5, -1) * p_plain[on:off].sum()
    assert torch.allclose(p_tempered[on:off], expected, atol=1e-6) and p_tempered[on + 60] == 0
    with pytest.raises(ValueError, match="pitch_temperature"):
        PerformanceGrammarLogitsProcessor(tokenizer, pitch_temperature=0.0)


def test_soft_note_limit_raises_the_odds_of_releasing_old_notes(tokenizer):
    # 60 struck at 0 s, 64 at 5 s, now 6 s: with the soft limit at 4 s, only 60 is past it (by 2 s).
    steps = ["NOTE_ON_60", *["TIME_SHIFT_100"] * 5, "NOTE_ON_64", "TIME_SHIFT_100"]
    ids = torch.tensor([tokenizer.convert_tokens_to_ids(["<bos>", *steps])])
    scores = torch.zeros(1, tokenizer.vocab_size)
    plain = PerformanceGrammarLogitsProcessor(tokenizer, history=ids.tolist())(ids, scores)
    soft = PerformanceGrammarLogitsProcessor(tokenizer, history=ids.tolist(), soft_note_seconds=4.0)(
        ids, scores
    )
    off = tokenizer.note_off_offset
    gain = soft[0] - plain[0]
    assert torch.isclose(gain[off + 60], torch.tensor(2.0 * RELEASE_NATS_PER_SECOND))
    assert gain[off + 64] == 0 and torch.equal(soft[0, :off], plain[0, :off])


def test_repeat_penalty_moves_a_repeated_strike_to_other_pitches(tokenizer):
    # 60 struck three times in a row (released in between), then 64 once: each run is followed.
    steps = ["NOTE_ON_60", "NOTE_OFF_60", "NOTE_ON_60", "NOTE_OFF_60", "NOTE_ON_60", "NOTE_OFF_60"]
    ids = torch.tensor([tokenizer.convert_tokens_to_ids(["<bos>", *steps])])
    assert strike_run(ids[0], tokenizer) == (60, 3)
    scores = torch.randn(1, tokenizer.vocab_size, generator=torch.Generator().manual_seed(2))
    plain = PerformanceGrammarLogitsProcessor(tokenizer, history=ids.tolist())
    penalised = PerformanceGrammarLogitsProcessor(tokenizer, history=ids.tolist(), repeat_penalty=1.0)
    p_plain, p_penalised = (
        torch.softmax(plain(ids, scores), -1)[0],
        torch.softmax(penalised(ids, scores), -1)[0],
    )
    on, off = tokenizer.note_on_offset, tokenizer.note_off_offset
    # The run of 3 costs 60 three nats against every other pitch; the strikes keep their total.
    odds = (p_penalised[on + 60] / p_penalised[on + 61]) / (p_plain[on + 60] / p_plain[on + 61])
    assert torch.isclose(odds, torch.exp(torch.tensor(-3.0)), rtol=1e-4)
    assert torch.isclose(p_penalised[on:off].sum(), p_plain[on:off].sum(), atol=1e-6)
    assert torch.allclose(p_penalised[off:], p_plain[off:], atol=1e-6)
    # The processor follows new tokens: another pitch starts a new run.
    ids = torch.cat([ids, torch.tensor([tokenizer.convert_tokens_to_ids(["NOTE_ON_64"])])], dim=1)
    penalised(ids, scores)
    assert penalised.last_struck.tolist() == [64] and penalised.run.tolist() == [1]


def test_soft_note_limit_ends_notes_before_the_hard_limit(model, tokenizer):
    # The random model holds notes for long: the soft limit ends many of them well before the hard one.
    def long_notes(**limits):
        rows = generate_ids(model, tokenizer, max_new_tokens=400, num_return_sequences=4, seed=0,
                            pitch_temperature=1.0, max_note_seconds=3.0, **limits)  # fmt: skip
        notes = [tokenizer.ids_to_notes(row) for row in rows]
        lengths = np.concatenate([n.offset - n.onset for n in notes])
        return int(np.count_nonzero(lengths >= 2.9)), len(lengths)

    capped, notes = long_notes(soft_note_seconds=None)
    assert capped > 0.05 * notes  # the hard limit ends these
    assert long_notes(soft_note_seconds=1.0)[0] < capped / 2


def test_sampling_limits_hold_in_generated_music(model, tokenizer):
    rows = generate_ids(model, tokenizer, max_new_tokens=600, temperature=1.5, num_return_sequences=3, seed=0,
                        max_silence_seconds=1.0, max_note_seconds=2.0)  # fmt: skip
    for row in rows:
        notes = tokenizer.ids_to_notes(row)
        assert (notes.offset - notes.onset).max() <= 2.0 + 1e-9
        onsets, reach = np.sort(notes.onset), np.maximum.accumulate(notes.offset[np.argsort(notes.onset)])
        assert onsets[0] <= 1.0 + 1e-9 and (onsets[1:] - reach[:-1]).max() <= 1.0 + 1e-9


def test_grammar_violations_count_orphan_offs_double_ons_double_offs_and_pads(tokenizer):
    ids = tokenizer.convert_tokens_to_ids(
        ["<bos>", "NOTE_OFF_50", "NOTE_ON_60", "NOTE_ON_60", "NOTE_OFF_60", "NOTE_OFF_60", "<pad>"]
    )
    assert grammar_violations(ids, tokenizer) == 4  # orphan off 50, double on 60, double off 60, pad


def test_stop_at_eos_ends_sequences(model, tokenizer):
    eos_model = MusicTransformerForCausalLM(model.config).eval()  # its own copy: the hook stays on it
    bias = torch.zeros(tokenizer.vocab_size)
    bias[tokenizer.eos_token_id] = 50.0
    eos_model.lm_head.register_forward_hook(lambda module, args, output: output + bias)
    rows = generate_ids(eos_model, tokenizer, max_new_tokens=50, seed=0, stop_at_eos=True, constrained=False)
    assert rows[0][-1] == tokenizer.eos_token_id and len(rows[0]) < 51
    rows = generate_ids(eos_model, tokenizer, max_new_tokens=50, seed=0)  # <eos> masked by default
    assert len(rows[0]) == 51 and tokenizer.eos_token_id not in rows[0]


@pytest.mark.slow
def test_generate_script_writes_midi(tmp_path, model, tokenizer):
    folder = tmp_path / "ckpt"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    out = tmp_path / "piece.mid"
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "generate.py"),
            "--model",
            str(folder),
            "--out",
            str(out),
            *[
                "--samples",
                "2",
                "--max_new_tokens",
                "40",
                "--seed",
                "0",
                "--temperature",
                "0.9",
                "--top_k",
                "20",
                "--prompt_seconds",
                "3",
            ],
            "--prompt",
            "bach_prelude_fugue_f_sharp_major_bwv858",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    for name in ("piece_1.mid", "piece_2.mid"):
        assert MidiTokenizer().encode_midi(tmp_path / name)
        with wave.open(str((tmp_path / name).with_suffix(".wav"))) as wav:  # soundfont: see test_audio.py
            assert (wav.getframerate(), wav.getnchannels()) == (44100, 2) and wav.getnframes() > 44100
    assert "tokens (prompts included)" in result.stdout


def test_max_seconds_stops_each_row_when_its_music_reaches_the_length(model, tokenizer):
    prompt = [tokenizer.bos_token_id, tokenizer.note_on_offset + 60]
    rows = generate_ids(model, tokenizer, prompt=prompt, max_new_tokens=2000, max_seconds=3.0, seed=0,
                        num_return_sequences=3)  # fmt: skip
    for row in rows:
        new = torch.tensor(row[len(prompt) :])
        assert time_steps(new, tokenizer) >= 300  # 3 s in 10 ms steps
        assert time_steps(new[:-1], tokenizer) < 300  # ... reached by the very last event
        assert tokenizer.pad_token_id not in row
    assert len({len(row) for row in rows}) > 1  # each row stops on its own


@pytest.mark.slow
def test_generation_config_sets_the_sampling_defaults(tmp_path):
    import json
    import shutil

    from hf_music import load_model
    from hf_music.generation import sampling_settings
    from hf_music.resources import DEFAULT_MODEL_DIR

    folder = shutil.copytree(DEFAULT_MODEL_DIR, tmp_path / "model")
    model, tokenizer = load_model(folder)
    before = generate_ids(model, tokenizer, max_new_tokens=64, seed=0)
    config = json.loads((folder / "generation_config.json").read_text())
    changed = {**config, "temperature": 0.3, "max_silence_seconds": 0.5, "pitch_temperature": 1.2}
    (folder / "generation_config.json").write_text(json.dumps(changed))
    model, tokenizer = load_model(folder)
    settings = sampling_settings(model)
    assert settings["temperature"] == 0.3 and settings["max_silence_seconds"] == 0.5
    assert (
        settings["pitch_temperature"] == 1.2 and settings["soft_note_seconds"] == config["soft_note_seconds"]
    )
    assert sampling_settings(model, soft_note_seconds=None)["soft_note_seconds"] is None  # None: off
    assert (
        generate_ids(model, tokenizer, max_new_tokens=64, seed=0) != before
    )  # no argument: the file decides
    explicit = generate_ids(
        model, tokenizer, max_new_tokens=64, seed=0,
        temperature=config["temperature"], max_silence_seconds=config["max_silence_seconds"],
        pitch_temperature=config["pitch_temperature"],
    )  # fmt: skip
    assert explicit == before  # arguments win over the file
    result = subprocess.run(
        [sys.executable, "-m", "hf_music", "--model", str(folder), "--seconds", "2", "--no_wav", "--seed", "5",
         "--out", str(tmp_path / "piece.mid")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "seed 5; temperature 0.3," in result.stdout and "max_silence_seconds 0.5" in result.stdout
    assert "pitch_temperature 1.2" in result.stdout


def test_prompt_ending_in_a_note_held_for_an_hour_continues(model, tokenizer):
    prompt = tokenizer.convert_tokens_to_ids(
        ["<bos>", "VELOCITY_16", "NOTE_ON_60"] + ["TIME_SHIFT_100"] * 3600
    )
    (row,) = generate_ids(model, tokenizer, prompt=prompt, max_seconds=3, max_new_tokens=500, seed=0)
    new = row[len(prompt) :]
    assert tokenizer.convert_ids_to_tokens(new[0]) == "NOTE_OFF_60"  # held past 8 s: released first
    assert float(time_steps(torch.tensor(new), tokenizer)) * tokenizer.time_step >= 3.0  # then 3 s of music
