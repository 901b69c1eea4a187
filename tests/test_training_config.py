"""TrainingConfig: the typed record of train.py's options, its files, recipes and resume rules.

Runs of train.py that save and resume it are in test_train.py (slow).
"""

from __future__ import annotations

import dataclasses
import json

import pytest
from conftest import MAESTRO_MINI

from hf_music.resources import DEFAULT_MODEL_DIR
from hf_music.run_record import RunRecord
from hf_music.train import build_parser, parse_args
from hf_music.training_config import (
    CONFIG_FILE,
    RECIPES_DIR,
    RESUME_MAY_DIFFER,
    RESUME_MUST_MATCH,
    TrainingConfig,
    TrainingConfigError,
    config_path,
    field_names,
    resume_conflicts,
)


def test_round_trip_through_training_config_json(tmp_path):
    config = TrainingConfig(
        tokens_file="data/x.tokens.npz", block_size=1024, augment=True, dropout=0.0, learning_rate=3e-4,
        max_minutes=2.5, mixed_precision="bf16", report_to="none",
    )  # fmt: skip
    path = config.save(tmp_path)
    assert path == tmp_path / CONFIG_FILE and not list(tmp_path.glob("*.tmp"))
    assert set(json.loads(path.read_text())) == set(field_names())  # every option, written out
    assert TrainingConfig.load(path) == config


def test_the_parser_has_one_option_per_field_with_its_default():
    parser = build_parser()
    defaults = vars(parser.parse_args([]))
    assert set(defaults) == {*field_names(), "config"}
    assert {name: defaults[name] for name in field_names()} == TrainingConfig().to_dict()


def test_the_resume_lists_decide_every_option_once():
    assert not set(RESUME_MUST_MATCH) & set(RESUME_MAY_DIFFER)
    assert sorted([*RESUME_MUST_MATCH, *RESUME_MAY_DIFFER]) == sorted(field_names())


def test_the_command_line_wins_over_the_config_file(tmp_path):
    config = tmp_path / "run.json"
    config.write_text(json.dumps({
        "maestro_dir": str(MAESTRO_MINI), "batch_size": 4, "learning_rate": 2e-3, "augment": True,
        "max_minutes": 3, "dropout": 0,
    }))  # fmt: skip
    args = parse_args(
        ["--config", str(config), "--learning_rate", "5e-4", "--no-augment", "--max_minutes", "none"]
    )
    assert (args.learning_rate, args.augment, args.max_minutes) == (5e-4, False, None)  # the command line
    assert (args.batch_size, args.maestro_dir, args.block_size) == (
        4,
        str(MAESTRO_MINI),
        512,
    )  # file, default
    assert isinstance(args.dropout, float)  # JSON's 0, as the field's type
    yaml = tmp_path / "run.yaml"
    yaml.write_text(f"maestro_dir: {MAESTRO_MINI}\ncompile: true\n")
    args = parse_args(["--config", str(yaml), "--batch_size", "2"])
    assert (args.compile, args.batch_size) == (True, 2)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"maestro_dir": "x", "lerning_rate": 0.1}', "TrainingConfig unknown lerning_rate"),
        ('{"maestro_dir": "x", "batch_size": "8"}', "batch_size"),
        ('{"maestro_dir": "x", "mixed_precision": "fp8"}', "expected one of no, fp16, bf16, got 'fp8'"),
        ('{"maestro_dir": "x",', "not JSON"),
        ('["maestro_dir"]', "expected a mapping"),
    ],
)
def test_a_bad_config_file_is_one_line_naming_it(tmp_path, capsys, text, message):
    config = tmp_path / "bad.json"
    config.write_text(text)
    with pytest.raises(SystemExit) as exit_status:
        parse_args(["--config", str(config)])
    assert exit_status.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert ": error: " in error and str(config) in error and message in error, error


def test_a_missing_config_names_the_recipes(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--config", "no_such_recipe"])
    assert (
        "no_such_recipe: no such file, nor a recipe of hf_music (recipes: default_model)"
        in capsys.readouterr().err
    )
    with pytest.raises(TrainingConfigError):
        config_path("../default_model")


def test_resume_conflicts_name_each_flag_with_both_values():
    saved = TrainingConfig(maestro_dir="a", learning_rate=1e-3, batch_size=8)
    harmless = dataclasses.replace(saved, eval_steps=7, report_to="wandb", max_minutes=3.0, output_dir="b")
    assert resume_conflicts(saved, harmless) == []
    changed = dataclasses.replace(saved, learning_rate=2e-3, batch_size=4, report_to="none")
    assert resume_conflicts(saved, changed) == ["--batch_size 8 -> 4", "--learning_rate 0.001 -> 0.002"]


def test_the_default_models_recipe_is_the_run_that_made_it():
    path = config_path("default_model")
    assert path == RECIPES_DIR / "default_model.json"
    recipe = TrainingConfig.load(path)
    ran = RunRecord.load(DEFAULT_MODEL_DIR).training.args  # the embedded model's own record
    # Options added to train.py after that run are at their defaults (as the run had them).
    assert recipe.to_dict() == {
        **TrainingConfig().to_dict(),
        **{k: v for k, v in ran.items() if k != "config"},
    }
    args = parse_args(["--config", "default_model"])
    assert TrainingConfig.from_namespace(args) == recipe
    repeat = parse_args(["--config", "default_model", "--max_steps", "7251", "--max_minutes", "none"])
    assert (repeat.max_steps, repeat.max_minutes, repeat.num_evaluations) == (7251, None, 6)  # README's
    assert (args.tokens_file, args.max_minutes, args.config_overrides) == (
        "data/maestro-v3.0.0.tokens.npz", 5.0, "n_embd=256,n_layer=4,n_head=4",
    )  # fmt: skip
