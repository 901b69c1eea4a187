"""What a training run was asked to do, as one typed record: every option of `hf-music train`.

    config = TrainingConfig.load("runs/maestro/training_config.json")   # or a recipe by name
    config.save("runs/maestro")

The dataclass is the one source of the options: train.py's argparse arguments are made from its
fields (type, default, help, choices), so a flag and its saved value cannot drift apart. train.py
writes the config to its output folder and into every checkpoint; `--config FILE` reads one back
(the command line wins over the file), and a resume refuses flags that would change the meaning
of the run it continues (RESUME_MUST_MATCH below). Types and choices are checked when a config is
made (huggingface_hub's strict dataclasses), so a file with a misspelt key or a string for a
number is an error naming the file, not a crash hours into a run.
"""

# No `from __future__ import annotations`: strict dataclasses check the field types, which must be
# real types, not strings.
import argparse
import dataclasses
import json
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from huggingface_hub.dataclasses import strict

from .configuration_music_transformer import PRESETS
from .run_record import RunRecordError, from_dict

CONFIG_FILE = "training_config.json"
# Ready-made configs that ship with the package: `--config default_model` finds them by name.
RECIPES_DIR = Path(__file__).resolve().parent / "assets" / "recipes"

# Steps timed by --max_minutes: after the first (compiling) steps, within the warm-up, where the
# learning rate does not depend on the run's length.
CALIBRATION_STEPS = (10, 40)


class TrainingConfigError(ValueError):
    """A config file that is missing, unreadable, or has an unknown key or a value of the wrong type."""


def one_of(choices):
    def check(value):
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(map(str, choices))}, got {value!r}")

    return check


def option(default, group: str, help: str | None = None, choices=None):
    """A field that is also a command-line option of train.py, in argparse group `group`."""
    metadata = {"group": group, "help": help, "choices": choices}
    if choices:  # argparse checks the command line only; the validator checks files too
        metadata["validator"] = one_of(choices)
    return field(default=default, metadata=metadata)


@strict
@dataclass
class TrainingConfig:
    # ---- data
    maestro_dir: str | None = option(None, "data", "extracted MAESTRO folder")
    maestro_zip: str | None = option(None, "data", "maestro-v3.0.0-midi.zip, a path or URL")
    maestro_version: str = option("v3.0.0", "data")
    midi_dir: str | None = option(None, "data", "any folder of MIDI files (fine-tuning on a new corpus)")
    tokens_file: str | None = option(
        None, "data", "a token pack from scripts/prepare_data.py (needs only numpy)"
    )
    validation_fraction: float = option(0.1, "data", "with --midi_dir")
    block_size: int = option(512, "data")
    augment: bool = option(False, "data", "transpose +-3 and stretch +-5%% (train split)")
    num_proc: int | None = option(None, "data", "processes for tokenization")
    tokenizer: str | None = option(
        None, "data",
        "a new model's vocabulary: 'performance' (default: performance events, tracks merged into one "
        "piano part), a miditok vocabulary (REMI, TSD, MIDILike, Structured, MMM: instruments kept) or a "
        "saved tokenizer folder; with --init_from only the model's own vocabulary works",
    )  # fmt: skip
    tokenizer_options: str | None = option(
        None, "data", 'miditok config options for --tokenizer, e.g. "use_programs=true,num_velocities=16"'
    )
    bpe_vocab_size: int | None = option(
        None, "data",
        "a new model's vocabulary: the performance events with byte-pair merges learned on the train "
        "split (🤗 tokenizers' BPE trainer) up to this many ids (391 are the events)",
    )  # fmt: skip
    # ---- model
    preset: str = option("tiny", "model", choices=tuple(sorted(PRESETS)))
    config_overrides: str | None = option(
        None, "model", 'change the preset, as in run_clm.py: "n_embd=256,n_layer=6,n_head=8"'
    )
    init_from: str | None = option(None, "model", "folder or Hub id to fine-tune instead of a new model")
    trust_remote_code: bool = option(
        False, "model", "let --init_from load a model type other than music_transformer by running its code"
    )
    dropout: float | None = option(None, "model", "override the config's dropouts")
    compile: bool = option(False, "model", "torch.compile the model")
    # ---- optimisation
    batch_size: int = option(8, "optimisation", "per device")
    gradient_accumulation_steps: int = option(1, "optimisation")
    learning_rate: float = option(1e-3, "optimisation")
    weight_decay: float = option(0.1, "optimisation")
    warmup_steps: int = option(100, "optimisation")
    lr_scheduler: str = option("cosine", "optimisation")
    max_grad_norm: float = option(1.0, "optimisation")
    max_steps: int | None = option(None, "optimisation", "optimizer steps (wins over --num_epochs)")
    num_epochs: int = option(10, "optimisation")
    max_minutes: float | None = option(
        None, "optimisation",
        "fit the run to this wall time: steps are counted from the speed of steps "
        f"{CALIBRATION_STEPS[0]}-{CALIBRATION_STEPS[1]} (the schedule is stretched to match; the run record "
        "keeps the step count, so --max_steps reproduces it)",
    )  # fmt: skip
    mixed_precision: str = option("no", "optimisation", choices=("no", "fp16", "bf16"))
    seed: int = option(0, "optimisation")
    # ---- run
    output_dir: str = option("runs/music_transformer", "run")
    eval_steps: int = option(200, "run")
    num_evaluations: int | None = option(
        None, "run", "evaluate this many times, evenly (wins over --eval_steps)"
    )
    max_eval_batches: int | None = option(None, "run", "cap evaluation cost on big corpora")
    checkpointing_steps: int = option(500, "run")
    checkpoints_total_limit: int = option(3, "run")
    resume_from_checkpoint: str | None = option(
        None, "run",
        "a checkpoint folder or 'latest'; its training_config.json fills the options not given, and "
        "options that would change the run it continues must keep their saved values",
    )  # fmt: skip
    log_steps: int = option(20, "run")
    report_to: str = option("tensorboard", "run", "tensorboard, wandb, all or none")
    push_to_hub: bool = option(False, "run", "publish the best model with its card at the end")
    hub_model_id: str | None = option(None, "run", "namespace/name for --push_to_hub")
    hub_private: bool = option(False, "run")

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str = "training config") -> "TrainingConfig":
        """Parsed JSON or YAML; keys left out keep their defaults, unknown keys are an error."""
        try:
            return from_dict(cls, values, where)
        except RunRecordError as error:
            raise TrainingConfigError(str(error)) from None

    @classmethod
    def from_namespace(cls, args: argparse.Namespace) -> "TrainingConfig":
        return cls(**{name: getattr(args, name) for name in field_names()})

    @classmethod
    def load(cls, path: str | os.PathLike) -> "TrainingConfig":
        return cls.from_dict(read_config_file(path), str(path))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, folder: str | os.PathLike) -> Path:
        """training_config.json in `folder`, written to a temporary file and renamed (never half a file)."""
        path = Path(folder) / CONFIG_FILE
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n")
        os.replace(tmp, path)
        return path


def field_names() -> list[str]:
    return [f.name for f in dataclasses.fields(TrainingConfig)]


# What a resume may change. A checkpoint continues one run: its weights, optimizer moments and
# schedule position only mean something for the data, model, batch, learning-rate schedule and
# seed they were made with, so a flag that changes those (and would silently make a different,
# unreproducible run) must keep its saved value. Flags that only say where results go, how often
# they are logged, evaluated or saved, how fast (compile, processes), or how long to run by the
# clock (a budget's fitted step count is kept in the checkpoint) may differ.
RESUME_MUST_MATCH = (
    "maestro_dir", "maestro_zip", "maestro_version", "midi_dir", "tokens_file", "validation_fraction",
    "block_size", "augment", "tokenizer", "tokenizer_options", "bpe_vocab_size",
    "preset", "config_overrides", "init_from", "dropout",
    "batch_size", "gradient_accumulation_steps", "learning_rate", "weight_decay", "warmup_steps",
    "lr_scheduler", "max_grad_norm", "max_steps", "num_epochs", "mixed_precision", "seed",
)  # fmt: skip
RESUME_MAY_DIFFER = (
    "num_proc", "trust_remote_code", "compile", "max_minutes", "output_dir", "eval_steps",
    "num_evaluations", "max_eval_batches", "checkpointing_steps", "checkpoints_total_limit",
    "resume_from_checkpoint", "log_steps", "report_to", "push_to_hub", "hub_model_id", "hub_private",
)  # fmt: skip


def resume_conflicts(saved: TrainingConfig, wanted: TrainingConfig) -> list[str]:
    """'--flag saved -> wanted' for each flag of RESUME_MUST_MATCH whose value differs."""
    return [
        f"--{name} {getattr(saved, name)} -> {getattr(wanted, name)}"
        for name in RESUME_MUST_MATCH
        if getattr(saved, name) != getattr(wanted, name)
    ]


def read_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """The mapping in a JSON or YAML file (.yaml/.yml); any problem is a TrainingConfigError naming it."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise TrainingConfigError(f"{path}: {error.strerror or error}") from None
    if path.suffix in (".yaml", ".yml"):
        import yaml  # a dependency of transformers, huggingface_hub and accelerate

        try:
            values = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise TrainingConfigError(f"{path}: {' '.join(str(error).split())}") from None
    else:
        try:
            values = json.loads(text)
        except ValueError as error:
            raise TrainingConfigError(f"{path}: not JSON ({error})") from None
    if not isinstance(values, dict):
        raise TrainingConfigError(f"{path}: expected a mapping of option names to values")
    return values


def recipes() -> list[str]:
    """The names of the configs that ship with the package (hf_music/assets/recipes/NAME.json)."""
    return sorted(p.stem for p in RECIPES_DIR.glob("*.json"))


def config_path(name: str) -> Path:
    """A config file's path: the file itself, else a recipe of the package by name ('default_model')."""
    if Path(name).is_file():
        return Path(name)
    if name.removesuffix(".json") in recipes():
        return RECIPES_DIR / f"{name.removesuffix('.json')}.json"
    raise TrainingConfigError(
        f"{name}: no such file, nor a recipe of hf_music (recipes: {', '.join(recipes())})"
    )


def _value_type(hint) -> type:
    """int for `int | None`, and so on."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        (inner,) = [part for part in typing.get_args(hint) if part is not type(None)]
        return inner
    return hint


def _or_none(kind: type):
    """An argparse type for an optional number: 'none' clears a value a config file set."""

    def parse(text: str):
        return None if text.lower() == "none" else kind(text)

    parse.__name__ = kind.__name__  # argparse names the type in its errors
    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One option per TrainingConfig field, in its group, with its type, default, help and choices.

    Booleans are --flag / --no-flag, so the command line can turn off what a config file turned on.
    """
    groups: dict[str, Any] = {}
    hints = typing.get_type_hints(TrainingConfig)
    for item in dataclasses.fields(TrainingConfig):
        meta = item.metadata
        if meta["group"] not in groups:
            groups[meta["group"]] = parser.add_argument_group(meta["group"])
        kind, optional = _value_type(hints[item.name]), hints[item.name] is not _value_type(hints[item.name])
        if kind is bool:
            options = {"action": argparse.BooleanOptionalAction}
        elif optional and kind in (int, float):
            options = {"type": _or_none(kind)}
        else:
            options = {"type": kind, "choices": meta["choices"]}
        groups[meta["group"]].add_argument(
            f"--{item.name}", default=item.default, help=meta["help"], **options
        )


__all__ = [
    "CALIBRATION_STEPS",
    "CONFIG_FILE",
    "RECIPES_DIR",
    "RESUME_MAY_DIFFER",
    "RESUME_MUST_MATCH",
    "TrainingConfig",
    "TrainingConfigError",
    "add_arguments",
    "config_path",
    "read_config_file",
    "recipes",
    "resume_conflicts",
]
