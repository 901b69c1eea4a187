"""The run record: typed, complete when written, strict when read, and the only source of the card."""

from __future__ import annotations

import dataclasses
import json

import pytest
from conftest import MAESTRO_MINI
from huggingface_hub.errors import StrictDataclassError

from hf_music import MidiTokenizer, MusicTransformerConfig, MusicTransformerForCausalLM
from hf_music.commands.evaluate import main as evaluate_main
from hf_music.hub import render_model_card
from hf_music.run_record import (
    Corpus,
    Evaluation,
    ModelShape,
    RunRecord,
    RunRecordError,
    ScoreRow,
    SplitSize,
    Training,
    ValidationPoint,
)


def make_record(**changes) -> RunRecord:
    training = Training(
        command="python scripts/train.py --preset tiny --max_steps 7", args={"block_size": 128, "seed": 3},
        completed_steps=7, max_steps=7, tokens_per_step=4 * 128, processes=1, device="a test bench",
        versions={"hf_music": "0"}, wall_seconds=123.4, tokens_per_second=4321.0,
        best_validation_nats_per_token=3.25, history=[ValidationPoint(0, 5.97, 999), ValidationPoint(7, 3.25, 999)],
    )  # fmt: skip
    fields = {
        "model": ModelShape(parameters=1234567, n_layer=2, n_embd=64, n_head=2, context=128, vocab_size=391),
        "training_data": [Corpus("midi_folder", "my-songs", "songs", "cc-by-4.0")],
        "base_model": None,
        "train": SplitSize(pieces=11, tokens=22222),
        "validation": SplitSize(pieces=3, tokens=999),
        "training": training,
        "evaluations": [],
    }
    return RunRecord(**{**fields, **changes})


def score(nll: float) -> list[ScoreRow]:
    return [
        ScoreRow("model", nll, nll / 0.693, 2.0, 0.5, 40.0, 4.0),
        ScoreRow("bigram", 4.0, 5.8, 55.0, 0.1, 160.0, 16.0),
    ]


def test_a_record_missing_a_field_or_with_a_wrong_type_cannot_be_made_or_saved(tmp_path):
    record = make_record()
    fields = {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}
    del fields["validation"]
    with pytest.raises(TypeError, match="validation"):
        RunRecord(**fields)
    with pytest.raises(StrictDataclassError, match="pieces"):
        SplitSize(pieces="11", tokens=22222)
    with pytest.raises(StrictDataclassError, match="training_data"):
        make_record(training_data=[{"kind": "maestro"}])  # a dict is not a Corpus
    with pytest.raises(StrictDataclassError, match="completed_steps"):
        record.training.completed_steps = 7.5  # checked on every assignment, not only at creation
    assert not list(tmp_path.iterdir())


def test_save_load_round_trip_and_strict_reading(tmp_path):
    record = make_record(
        evaluations=[Evaluation("my-songs", "validation", 3, 990, 128, 128, score(3.1), None)]
    )
    record.save(tmp_path)
    assert RunRecord.load(tmp_path) == record
    data = json.loads((tmp_path / "run_record.json").read_text())
    del data["training"]["device"]
    data["trainig"] = {}
    (tmp_path / "run_record.json").write_text(json.dumps(data))
    with pytest.raises(RunRecordError, match=r"run_record\.json: RunRecord unknown trainig"):
        RunRecord.load(tmp_path)
    del data["trainig"]
    (tmp_path / "run_record.json").write_text(json.dumps(data))
    with pytest.raises(RunRecordError, match=r"Training missing device"):
        RunRecord.load(tmp_path)


def test_a_newer_evaluation_of_the_same_split_replaces_the_older():
    old = Evaluation("my-songs", "validation", 3, 990, 128, 128, score(3.1), None)
    other_stride = dataclasses.replace(old, stride=64)
    test = dataclasses.replace(old, split="test")
    record = make_record(evaluations=[old, other_stride])
    newer = dataclasses.replace(old, rows=score(2.9))
    assert record.with_evaluations([newer, test]).evaluations == [other_stride, newer, test]


def test_the_card_is_rendered_from_the_record(tmp_path):
    folder = tmp_path / "ckpt"
    MusicTransformerForCausalLM(MusicTransformerConfig.from_preset("tiny", n_positions=128)).save_pretrained(
        folder
    )
    record = make_record(evaluations=[Evaluation("my-songs", "test", 2, 500, 128, 64, score(3.0123), None)])
    record.save(folder)
    card = render_model_card(folder, "someone/songs")
    # Every figure comes from the record (the saved config says other things: 4 layers, 128 wide).
    for expected in (
        "| Parameters | 1,234,567 |",
        "| Layers / width / heads | 2 / 64 / 2 |",
        "| Context | 128 events",
        "- my-songs (read from `songs`): cc-by-4.0",
        "The training split had 11 pieces (22,222 tokens); the validation split 3 pieces (999 tokens).",
        "| steps done | 7 of 7 (512 tokens per step) |",
        "| processes / device | 1 / a test bench |",
        "| training throughput | 4,321 tokens/s |",
        "python scripts/train.py --preset tiny --max_steps 7",
        "**3.2500 nats/token**",
        "from 5.9700 at step 0",
        "the **test split of my-songs** (2 pieces, 500 scored tokens, context 128, stride 64)",
        "| model | 3.0123 |",
    ):
        assert expected in card.text, expected
    assert card.data.license == "cc-by-4.0"  # the data's own licence
    index = {(r.dataset_name, r.dataset_split, r.metric_type): r.metric_value for r in card.data.eval_results}
    assert index == {
        ("my-songs (test split)", "test", "loss"): 3.0123,
        ("my-songs (test split)", "test", "perplexity"): 20.33,
    }


def test_evaluate_adds_its_results_to_the_checkpoints_record(tmp_path):
    folder = tmp_path / "ckpt"
    MusicTransformerForCausalLM(MusicTransformerConfig.from_preset("tiny", n_positions=128)).save_pretrained(
        folder
    )
    MidiTokenizer().save_pretrained(folder)
    make_record().save(folder)
    (evaluation,) = evaluate_main(
        ["--model", str(folder), "--maestro_dir", str(MAESTRO_MINI), "--save_to_record", "--batch_size", "16"]
    )
    saved = RunRecord.load(folder).evaluations
    assert saved == [evaluation]
    assert (evaluation.corpus, evaluation.split, evaluation.pieces) == (
        "maestro-mini (MAESTRO v3.0.0 layout)", "validation", 8
    )  # fmt: skip
    index = {r.dataset_name for r in render_model_card(folder, "someone/x").data.eval_results}
    assert index == {"maestro-mini (MAESTRO v3.0.0 layout) (validation split)"}
