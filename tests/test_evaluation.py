"""Evaluation: n-gram yardsticks, model scoring on the same tokens, and music statistics."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import MAESTRO_MINI, REPO_ROOT

from hf_music import MusicTransformerConfig, MusicTransformerForCausalLM, PerformanceNotes
from hf_music.evaluation import (
    KEY_PROFILES,
    compare_features,
    key_correlations,
    music_features,
    musical_statistics,
    musicality_summary,
    ngram_log_probs,
    overlap_and_kl,
    overlap_of_statistics,
    recurring_figure_share,
    score_blocks,
    windows_of,
)
from hf_music.run_record import load_evaluations


def test_ngram_probabilities_on_a_toy_corpus():
    unigram, bigram = ngram_log_probs([[1, 3, 4, 3, 4, 2], [1, 3, 4, 2]], vocab_size=5, pad_id=0)
    p_uni = unigram.exp().numpy()
    # targets: 3 4 3 4 2 | 3 4 2 -> counts 3:3 4:3 2:2, plus one for every id but the pad
    assert np.allclose(p_uni, np.array([0, 1, 3, 4, 4]) / 12)
    p_bi = bigram.exp().numpy()
    assert np.allclose(p_bi.sum(axis=1), 1)
    # after 3 always 4 (3 times): (3 + 1 * 4/12) / (3 + 1)
    assert math.isclose(p_bi[3, 4], (3 + 4 / 12) / 4)
    assert math.isclose(p_bi[0, 3], 4 / 12)  # a context never seen falls back on the unigram


def test_score_blocks_matches_the_models_own_loss_and_the_baselines_by_hand():
    torch.manual_seed(0)
    model = MusicTransformerForCausalLM(MusicTransformerConfig.from_preset("tiny", n_positions=64)).eval()
    blocks = torch.randint(3, 391, (5, 64))
    unigram, bigram = ngram_log_probs(blocks.tolist(), 391)
    rows, count = score_blocks(model, blocks, unigram, bigram, batch_size=2)
    by_name = {row["name"]: row for row in rows}
    assert count == 5 * 63
    with torch.no_grad():
        loss = model(input_ids=blocks, labels=blocks).loss.item()
    assert math.isclose(by_name["model"]["nll"], loss, rel_tol=1e-4)
    targets, contexts = blocks[:, 1:], blocks[:, :-1]
    assert math.isclose(by_name["unigram"]["nll"], -unigram[targets].mean().item(), rel_tol=1e-9)
    assert math.isclose(by_name["bigram"]["nll"], -bigram[contexts, targets].mean().item(), rel_tol=1e-9)
    for row in rows:
        assert math.isclose(row["perplexity"], math.exp(row["nll"])) and 0 <= row["accuracy"] <= 1


def notes(onsets, durations, pitches, velocity=64) -> PerformanceNotes:
    onset = np.asarray(onsets, float)
    return PerformanceNotes(
        onset, onset + np.asarray(durations, float), np.asarray(pitches), np.full(len(onset), velocity)
    )


def test_music_features_of_a_known_piece():
    chord_then_melody = notes([0, 0, 0, 1, 1.5, 2], [1, 1, 1, 0.5, 0.5, 0.5], [60, 64, 67, 72, 71, 69])
    f = music_features(chord_then_melody, window_seconds=1.0)
    assert f["polyphony"].tolist() == [1, 2, 3, 1, 1, 1]  # the chord builds up, the melody is alone
    assert np.allclose(f["inter_onset_interval_s"], [1, 0.5, 0.5])
    assert f["pitch_class"].tolist() == [0, 4, 7, 0, 11, 9]
    assert f["notes_per_second"].tolist() == [3, 2]  # windows [0, 1) and [1, 2.5]


def test_overlap_is_1_and_kl_0_for_equal_sets_and_overlap_0_for_disjoint_ones():
    bins = np.arange(-0.5, 12.5)
    same = np.array([0, 4, 7, 7, 11])
    assert overlap_and_kl(same, same, bins) == pytest.approx((1.0, 0.0), abs=1e-9)
    oa, kl = overlap_and_kl(np.array([0, 0, 1]), np.array([5, 6, 6]), bins)
    assert oa == 0 and kl > 5
    rows = compare_features([notes([0, 1], [0.5, 0.5], [60, 62])], [notes([0, 1], [0.5, 0.5], [60, 62])])
    assert all(row["overlap"] == pytest.approx(1) and row["kl"] == pytest.approx(0, abs=1e-6) for row in rows)


@pytest.mark.slow
def test_evaluate_script_prints_and_writes_the_table(tmp_path):
    folder = tmp_path / "model"
    model = MusicTransformerForCausalLM(MusicTransformerConfig.from_preset("tiny", n_positions=256))
    model.save_pretrained(folder)
    from hf_music import MidiTokenizer

    MidiTokenizer().save_pretrained(folder)
    out = tmp_path / "evaluation.json"
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "evaluate.py"), "--model", str(folder),
         "--maestro_dir", str(MAESTRO_MINI), "--samples", "2", "--max_new_tokens", "64", "--json", str(out)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    (validation,) = load_evaluations(out)
    assert (validation.corpus, validation.split, validation.context, validation.stride) == (
        "maestro-mini (MAESTRO v3.0.0 layout)", "validation", 256, 256
    )  # fmt: skip
    assert validation.pieces == 8
    assert [row.name for row in validation.rows] == ["model", "bigram", "unigram"]
    # An untrained model is near chance (ln 391 = 5.97) and loses to the bigram fitted on the train split.
    nll = {row.name: row.nats_per_token for row in validation.rows}
    assert abs(nll["model"] - math.log(391)) < 0.3 and nll["bigram"] < nll["unigram"] < nll["model"]
    for row in validation.rows:
        assert math.isclose(row.bits_per_token, row.nats_per_token / math.log(2))
        # Per second and per note are the same total over other units: their ratio is notes per second.
        assert row.nats_per_second / row.nats_per_note == pytest.approx(
            validation.model.nats_per_second / validation.model.nats_per_note
        )
    assert {row.feature for row in validation.samples.features} >= {"pitch_class", "polyphony", "velocity"}
    assert "bigram" in result.stdout and "pitch_class" in result.stdout


def test_degeneration_statistics_of_hand_made_pieces():
    from hf_music.evaluation import degeneration_statistics

    # One note held 12 s in a 20 s piece: 0.05 notes/s, all onsets one pitch, 8 s of silence after it.
    held = degeneration_statistics(notes([0.0], [12.0], [60]), duration=20.0)
    assert held["notes_per_second"] == pytest.approx(0.05) and held["longest_note_s"] == 12.0
    assert held["max_pitch_share"] == 1.0 and held["longest_silence_s"] == pytest.approx(8.0)
    assert held["polyphony_max"] == 1 and held["longest_repeat_run"] == 1
    # One key hammered 40 times, then a C major chord held: the run is 40, the share of 60 in the
    # first 10 s window is 1, and 3 notes sound at once at the end.
    onsets = [0.25 * i for i in range(40)] + [12.0, 12.0, 12.0]
    piece = notes(onsets, [0.1] * 40 + [2.0] * 3, [60] * 40 + [60, 64, 67])
    stats = degeneration_statistics(piece, duration=20.0)
    assert stats["longest_repeat_run"] == 41  # the chord's 60 sorts first at 12 s and continues the run
    assert stats["max_pitch_share"] == 1.0 and stats["polyphony_max"] == 3
    assert stats["longest_silence_s"] == pytest.approx(6.0)  # 14 s to the end
    assert stats["notes_per_second"] == pytest.approx(43 / 20)
    # A scale of 20 pitches over 10 s: no pitch takes more than a twentieth of a window.
    scale = degeneration_statistics(
        notes([0.5 * i for i in range(20)], [0.5] * 20, list(range(60, 80))), 10.0
    )
    assert scale["max_pitch_share"] == pytest.approx(1 / 20) and scale["longest_silence_s"] == 0.0
    assert scale["polyphony_p95"] == 1 and scale["longest_repeat_run"] == 1
    # Nothing at all: silence for the whole piece.
    empty = degeneration_statistics(notes([], [], []), duration=20.0)
    assert empty["notes_per_second"] == 0 and empty["longest_silence_s"] == 20.0


def test_out_of_range_limits_use_the_references_percentiles():
    from hf_music.evaluation import out_of_range, out_of_range_limits

    reference = [{"notes_per_second": float(v), "longest_note_s": float(v)} for v in range(1, 102)]
    limits = out_of_range_limits([{**r, **{k: 0.0 for k in ("max_pitch_share", "polyphony_p95",
                                  "polyphony_max", "longest_silence_s", "longest_repeat_run")}} for r in reference])  # fmt: skip
    assert limits["notes_per_second"][0] == pytest.approx(2.0) and limits["longest_note_s"][
        1
    ] == pytest.approx(100.0)
    sample = dict.fromkeys(limits, 0.0) | {"notes_per_second": 1.5, "longest_note_s": 120.0}
    assert set(out_of_range(sample, limits)) == {"notes_per_second", "longest_note_s"}


@pytest.mark.slow
def test_evaluate_script_on_a_few_files_of_the_official_zip(tmp_path):
    """Four real members of the full MAESTRO v3.0.0 zip (2 train, 1 validation, 1 test), MAESTRO's own splits."""
    import csv
    import io
    import zipfile

    from conftest import SHARED_DATA

    from hf_music import MidiTokenizer

    with zipfile.ZipFile(SHARED_DATA / "maestro-v3.0.0-midi.zip") as full:
        rows = list(csv.DictReader(io.StringIO(full.read("maestro-v3.0.0/maestro-v3.0.0.csv").decode())))
        chosen = [r for r in rows if r["split"] == "train"][:2] + [
            next(r for r in rows if r["split"] == split) for split in ("validation", "test")
        ]
        small = tmp_path / "maestro-v3.0.0-midi.zip"
        with zipfile.ZipFile(small, "w") as archive:
            text = io.StringIO()
            writer = csv.DictWriter(text, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(chosen)
            archive.writestr("maestro-v3.0.0/maestro-v3.0.0.csv", text.getvalue())
            for row in chosen:
                name = f"maestro-v3.0.0/{row['midi_filename']}"
                archive.writestr(name, full.read(name))
    folder = tmp_path / "model"
    MusicTransformerForCausalLM(MusicTransformerConfig.from_preset("tiny", n_positions=128)).save_pretrained(
        folder
    )
    MidiTokenizer().save_pretrained(folder)
    out = tmp_path / "evaluation.json"
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "evaluate.py"), "--model", str(folder), "--maestro_zip",
         str(small), "--split", "validation", "test", "--stride", "64", "--json", str(out)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    evaluations = load_evaluations(out)
    assert {(e.corpus, e.stride, e.context) for e in evaluations} == {("MAESTRO v3.0.0", 64, 128)}
    assert {e.split: e.pieces for e in evaluations} == {"validation": 1, "test": 1}
    assert "MAESTRO v3.0.0 test: 1 pieces" in result.stdout


def test_key_correlations_find_the_key_of_a_profile():
    g_major, e_minor = KEY_PROFILES[7], KEY_PROFILES[12 + 4]
    correlations = key_correlations(np.stack([g_major, e_minor, np.ones(12)]))
    assert correlations.shape == (3, 24)
    assert correlations[0].argmax() == 7 and math.isclose(correlations[0].max(), 1.0)
    assert correlations[1].argmax() == 16 and not correlations[2].any()  # a flat histogram has no key


def test_recurring_figures_count_repeated_interval_patterns():
    assert recurring_figure_share(np.array([60, 62, 64, 60, 62, 64])) == 0.0  # (2, 2, -4) once, etc.
    # (2, 2, 1) comes twice among the five figures of two C-D-E-F runs; transposed it still counts.
    assert math.isclose(recurring_figure_share(np.array([60, 62, 64, 65, 67, 69, 71, 72])), 2 / 5)
    assert recurring_figure_share(np.array([60, 62])) == 0.0


def test_musical_statistics_of_a_scale_against_a_chromatic_cloud():
    scale = [60, 62, 64, 65, 67, 69, 71, 72]
    tonal = notes(np.arange(40) * 0.5, [0.4] * 39 + [8.0], scale * 5)
    stats = musical_statistics(tonal, 20.0)
    assert math.isclose(stats["long_note_share"], 1 / 40)
    counts = np.bincount(np.array(scale * 5) % 12, minlength=12) / 40
    assert math.isclose(
        stats["pitch_class_entropy"], -(counts[counts > 0] * np.log2(counts[counts > 0])).sum()
    )
    assert stats["key_correlation"] > 0.8 and stats["key_consistency"] == 1.0
    assert stats["recurring_figure_share"] > 0.8
    chromatic = notes(np.arange(48) * 0.4, [0.3] * 48, 60 + (np.arange(48) * 7) % 12)
    cloud = musical_statistics(chromatic, 20.0)
    assert math.isclose(cloud["pitch_class_entropy"], math.log2(12)) and cloud["key_correlation"] < 0.1
    assert cloud["long_note_share"] == 0.0
    assert musical_statistics(notes([], [], []), 20.0)["pitch_class_entropy"] == 0.0


def test_windows_of_a_long_piece_and_overlap_of_statistics():
    piece = notes(np.arange(120.0), [0.5] * 120, [60] * 120)
    windows = windows_of(piece, 120.0, 20.0)
    assert [len(w) for w in windows] == [20] * 6 and all(w.onset.min() == 0 for w in windows)
    stats = [musical_statistics(w, 20.0) for w in windows]
    overlap = overlap_of_statistics(stats, stats)
    assert all(math.isclose(v, 1.0) for v in overlap.values())
    other = [
        musical_statistics(w, 20.0)
        for w in windows_of(notes(np.arange(120.0), [9.0] * 120, [60] * 120), 120.0, 20.0)
    ]
    assert overlap_of_statistics(stats, other)["long_note_share"] == 0.0


def test_musicality_summary_pools_long_notes_and_takes_medians():
    pieces = [notes([0, 1, 2], [9.0, 0.5, 0.5], [60, 62, 64]), notes([0, 1], [4.5, 0.5], [60, 67])]
    summary = musicality_summary(pieces, 20.0)
    assert math.isclose(summary["held_7_9s_share"], 1 / 5) and math.isclose(summary["held_4s_share"], 2 / 5)
    entropies = [musical_statistics(p, 20.0)["pitch_class_entropy"] for p in pieces]
    assert math.isclose(summary["medians"]["pitch_class_entropy"], float(np.median(entropies)))
    assert "overlap" not in summary and len(summary["windows"]) == 2
    assert set(musicality_summary(pieces, 20.0, summary["windows"])["overlap"].values()) == {1.0}
