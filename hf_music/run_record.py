"""What a training run is, as one typed record: written by train.py and evaluate.py, read by the
model card and the push script.

    record = RunRecord.load("runs/maestro/best")        # run_record.json of a checkpoint
    record = record.with_evaluations(evaluations)       # scripts/evaluate.py's results
    record.save("runs/maestro/best")

Every field is required and type-checked when a record is made (huggingface_hub's strict
dataclasses), so a writer that forgets a fact, or misspells one, fails when it writes, not
when a model card is rendered months later. Unknown keys in a file are an error too.
"""

# No `from __future__ import annotations`: strict dataclasses check the field types, which must be
# real types, not strings.
import dataclasses
import json
import math
import os
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huggingface_hub.dataclasses import strict
from huggingface_hub.errors import StrictDataclassError

RECORD_FILE = "run_record.json"


class RunRecordError(ValueError):
    """A run record that is missing a field, has one too many, or a value of the wrong type."""


@strict
@dataclass
class Corpus:
    """One body of training or evaluation data, named exactly (never a subset under its parent's name)."""

    kind: str  # "maestro" (MAESTRO's own layout and splits) or "midi_folder" (split by path hash)
    name: str  # "MAESTRO v3.0.0", "maestro-mini (MAESTRO v3.0.0 layout)", a folder's name
    source: str | None  # the folder or zip it was read from, by name
    license: str | None  # a Hub licence id ("cc-by-nc-sa-4.0"); None when nobody said


@strict
@dataclass
class SplitSize:
    pieces: int
    tokens: int


@strict
@dataclass
class ModelShape:
    parameters: int
    n_layer: int
    n_embd: int
    n_head: int
    context: int  # n_positions: events the model sees at once
    vocab_size: int
    bpe_merges: int = 0  # of the vocabulary, merged (BPE) tokens of performance events


@strict
@dataclass
class ValidationPoint:
    """train.py's validation loss at one step."""

    step: int
    nats_per_token: float
    tokens: int


@strict
@dataclass
class Training:
    """How the weights were made: the command, its arguments, the hardware and what it cost."""

    command: str
    args: dict[str, Any]
    completed_steps: int
    max_steps: int
    tokens_per_step: int  # global batch x block size
    processes: int
    device: str
    versions: dict[str, str]
    wall_seconds: float  # over every (re)start, evaluations and compilation included
    tokens_per_second: float | None  # training steps only; None until the run has ended
    best_validation_nats_per_token: float | None
    history: list[ValidationPoint]

    @property
    def best_validation_perplexity(self) -> float | None:
        best = self.best_validation_nats_per_token
        return math.exp(best) if best is not None else None


@strict
@dataclass
class ScoreRow:
    """One model's (or yardstick's) scores on the tokens of one evaluation."""

    name: str  # "model", "bigram" or "unigram" (yardsticks fitted on the train split)
    nats_per_token: float
    bits_per_token: float
    perplexity: float
    accuracy: float
    nats_per_second: float | None  # of music: comparable across vocabularies (None: not a
    nats_per_note: float | None  # performance vocabulary, whose TIME_SHIFTs and NOTE_ONs count them)


@strict
@dataclass
class FeatureRow:
    """A musical feature of generated pieces against held-out ones (Yang & Lerch 2020)."""

    feature: str  # values are None where a set had none (e.g. no notes in a short sample)
    overlap: float | None
    kl: float | None
    reference_mean: float | None
    generated_mean: float | None


@strict
@dataclass
class SampleComparison:
    count: int
    max_new_tokens: int
    temperature: float
    features: list[FeatureRow]


@strict
@dataclass
class Evaluation:
    """scripts/evaluate.py on one split of one corpus, at a stated context and stride."""

    corpus: str  # exact name, as in Corpus.name
    split: str
    pieces: int
    tokens: int  # scored targets
    context: int
    stride: int
    rows: list[ScoreRow]  # the model first
    samples: SampleComparison | None

    @property
    def model(self) -> ScoreRow:
        return next(row for row in self.rows if row.name == "model")


@strict
@dataclass
class RunRecord:
    model: ModelShape
    training_data: list[Corpus]  # a fine-tune's base model's corpora first: the licence follows them all
    base_model: str | None  # the --init_from it was fine-tuned from
    train: SplitSize
    validation: SplitSize
    training: Training
    evaluations: list[Evaluation]

    def save(self, folder: str | os.PathLike) -> Path:
        path = Path(folder) / RECORD_FILE
        path.write_text(json.dumps(dataclasses.asdict(self), indent=2, allow_nan=False) + "\n")
        return path

    @classmethod
    def load(cls, folder: str | os.PathLike) -> "RunRecord":
        path = Path(folder) / RECORD_FILE if Path(folder).is_dir() else Path(folder)
        return from_dict(cls, json.loads(path.read_text()), str(path))

    def with_evaluations(self, evaluations: list[Evaluation]) -> "RunRecord":
        """This record with `evaluations` added; an older result for the same corpus, split,
        context and stride is replaced."""
        keys = {(e.corpus, e.split, e.context, e.stride) for e in evaluations}
        kept = [e for e in self.evaluations if (e.corpus, e.split, e.context, e.stride) not in keys]
        return dataclasses.replace(self, evaluations=[*kept, *evaluations])

    @property
    def license(self) -> str | None:
        """The training data's licences: one for all of them, or None when they differ or are unknown."""
        licenses = {corpus.license for corpus in self.training_data}
        return licenses.pop() if len(licenses) == 1 else None


def from_dict(cls, data: Any, where: str = "run record"):
    """A record dataclass from parsed JSON, nested records included; any gap or surplus is an error."""
    if not isinstance(data, dict):
        raise RunRecordError(f"{where}: expected an object for {cls.__name__}, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    # A field with a default came later: records written before it still load.
    required = {f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING}
    missing, unknown = required - set(data), set(data) - names
    if missing or unknown:
        raise RunRecordError(
            f"{where}: {cls.__name__} "
            + "; ".join(
                part
                for part in (
                    f"missing {', '.join(sorted(missing))}" if missing else "",
                    f"unknown {', '.join(sorted(unknown))}" if unknown else "",
                )
                if part
            )
        )
    values = {
        name: _convert(hints[name], data[name], f"{where}: {cls.__name__}.{name}")
        for name in names & set(data)
    }
    try:
        return cls(**values)
    except (StrictDataclassError, TypeError, ValueError) as error:
        raise RunRecordError(f"{where}: {' '.join(str(error).split())}") from error


def _convert(hint, value, where: str):
    """JSON value -> the annotated type: nested records built, ints accepted where floats are meant."""
    origin, parts = typing.get_origin(hint), typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, where)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in parts:
            return None
        (inner,) = [part for part in parts if part is not type(None)]
        return _convert(inner, value, where)
    if origin is list and isinstance(value, list):
        return [_convert(parts[0], item, where) for item in value]
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value  # checked by the strict dataclass


def save_evaluations(evaluations: list[Evaluation], path: str | Path) -> Path:
    """Evaluation records as JSON: {"evaluations": [...]}."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [dataclasses.asdict(evaluation) for evaluation in evaluations]
    path.write_text(json.dumps({"evaluations": rows}, indent=2, allow_nan=False) + "\n")
    return path


def load_evaluations(path: str | Path) -> list[Evaluation]:
    """The records `save_evaluations` wrote; a malformed file is a RunRecordError naming it."""
    data = json.loads(Path(path).read_text())
    if not isinstance(data, dict) or set(data) != {"evaluations"}:
        raise RunRecordError(f'{path}: expected {{"evaluations": [...]}} from scripts/evaluate.py --json')
    return [
        from_dict(Evaluation, row, f"{path}: evaluation {i}") for i, row in enumerate(data["evaluations"])
    ]


__all__ = [
    "RECORD_FILE",
    "Corpus",
    "Evaluation",
    "FeatureRow",
    "ModelShape",
    "RunRecord",
    "RunRecordError",
    "SampleComparison",
    "ScoreRow",
    "SplitSize",
    "Training",
    "ValidationPoint",
    "load_evaluations",
    "save_evaluations",
]
