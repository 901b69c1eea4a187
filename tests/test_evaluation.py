"""Evaluation: n-gram yardsticks, model scoring on the same tokens, and music statistics."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import MAESTRO_MINI, REPO_ROOT

from hf_music import MusicTransformerConfig, MusicTransformerForCausalLM, PerformanceNotes
from hf_music.evaluation import (
    compare_features,
    music_features,
    ngram_log_probs,
    overlap_and_kl,
    score_blocks,
)


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


def test_overlap_and_kl_bounds():
    bins = np.arange(-0.5, 12.5)
    same = np.array([0, 4, 7, 7, 11])
    assert overlap_and_kl(same, same, bins) == pytest.approx((1.0, 0.0), abs=1e-9)
    oa, kl = overlap_and_kl(np.array([0, 0, 1]), np.array([5, 6, 6]), bins)
    assert oa == 0 and kl > 5
    rows = compare_features([notes([0, 1], [0.5, 0.5], [60, 62])], [notes([0, 1], [0.5, 0.5], [60, 62])])
    assert all(row["overlap"] == pytest.approx(1) and row["kl"] == pytest.approx(0, abs=1e-6) for row in rows)


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
    report = json.loads(out.read_text())
    assert report["corpus"] == "MAESTRO v3.0.0" and report["block_size"] == 256 and report["stride"] == 256
    validation = report["splits"]["validation"]
    assert validation["pieces"] == 8
    names = [row["name"] for row in validation["language_model"]]
    assert names == ["model", "bigram", "unigram"]
    # An untrained model is near chance (ln 391 = 5.97) and loses to the bigram fitted on the train split.
    rows = {row["name"]: row for row in validation["language_model"]}
    nll = {name: row["nll"] for name, row in rows.items()}
    assert abs(nll["model"] - math.log(391)) < 0.3 and nll["bigram"] < nll["unigram"] < nll["model"]
    for row in rows.values():
        assert math.isclose(row["bits_per_token"], row["nll"] / math.log(2))
        # Per second and per note are the same total over other units: their ratio is notes per second.
        assert row["nats_per_second"] / row["nats_per_note"] == pytest.approx(
            rows["model"]["nats_per_second"] / rows["model"]["nats_per_note"]
        )
    assert {row["feature"] for row in report["samples"]["features"]} >= {
        "pitch_class",
        "polyphony",
        "velocity",
    }
    assert "bigram" in result.stdout and "pitch_class" in result.stdout
