"""Publishing to the Hugging Face Hub: the model card, the repo folder, and the upload.

    folder = assemble_repo("runs/maestro/best", "out/repo", repo_id="me/music-transformer")
    push_to_hub("runs/maestro/best", "me/music-transformer")   # assemble + create_repo + one commit

The card is rendered from the top-level ``model_card.md`` (a Jinja template, shipped in the
package as ``assets/model_card.md``) and the checkpoint's run record only
(``run_record.json``, `hf_music.run_record.RunRecord`, written by scripts/train.py and
scripts/evaluate.py), with evaluations given here added to it. ``HF_TOKEN`` and
``HF_ENDPOINT`` are honoured by huggingface_hub itself.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

from huggingface_hub import EvalResult, HfApi, ModelCard, ModelCardData

from .music_transformer import CODE_DIR
from .music_transformer.modeling_music_transformer import MusicTransformerForCausalLM, write_custom_generate
from .music_transformer.tokenization_miditok import MIDITOK_PARAMS_FILE
from .resources import ASSETS, CheckpointError, load_weights, saved_tokenizer
from .run_record import RECORD_FILE, Corpus, Evaluation, ModelShape, RunRecord, RunRecordError

MODEL_CARD_TEMPLATE = ASSETS / "model_card.md"
# Files of a save_pretrained checkpoint that belong in a Hub repo, copied as they are. The tokenizer's
# files (tokenizer_config.json, tokenizer.json) are written anew by MidiTokenizer.save_pretrained, so
# that older checkpoints gain the fast tokenizer and model_max_length = the model's context.
CHECKPOINT_FILES = (
    "config.json",
    "generation_config.json",
    "model.safetensors",
)
# The model's code for trust_remote_code, always this package's own: a checkpoint folder's copies
# (perhaps edited) are never published.
CODE_FILES = (
    "configuration_music_transformer.py",
    "modeling_music_transformer.py",
    "tokenization_music_transformer.py",
)
TAGS = ["music", "midi", "symbolic-music", "music-generation", "music-transformer"]
MAESTRO_LICENSE = "cc-by-nc-sa-4.0"


class HubError(ValueError):
    """A publishing request that cannot work (bad repo id, missing checkpoint or token)."""


def _transport_errors() -> tuple[type[BaseException], ...]:
    """The HTTP clients' error classes that huggingface_hub lets through (not OSErrors)."""
    import importlib

    found = []
    for module in ("httpx2", "httpx", "requests"):  # whichever this huggingface_hub uses
        try:
            found.append(importlib.import_module(module).HTTPError)
        except (ImportError, AttributeError):
            continue
    return tuple(found)


# What a publishing command turns into one line on stderr (see publish_error_line).
PUBLISH_ERRORS = (HubError, OSError, *_transport_errors())


def publish_error_line(error: BaseException) -> str:
    """One line for a failed upload, naming the endpoint when the network or the Hub said no."""
    if isinstance(error, (HubError, RunRecordError)):
        return str(error)
    from huggingface_hub import constants

    return f"{constants.ENDPOINT}: {type(error).__name__}: {error}".splitlines()[0]


def check_repo_id(repo_id: str) -> str:
    """'namespace/name' or a clear error: the Hub needs the user or organisation to upload to."""
    parts = repo_id.split("/")
    if len(parts) != 2 or not all(parts):
        raise HubError(
            f"repo id {repo_id!r} must be 'namespace/name' (your user or organisation, a slash, a name)"
        )
    return repo_id


def require_token(token: str | None = None) -> str:
    """The given token, else HF_TOKEN or the `hf auth login` one; a clear error when there is none."""
    from huggingface_hub.utils import get_token

    token = token or get_token()
    if not token:
        raise HubError(
            "no Hugging Face token: set HF_TOKEN or run `hf auth login` (a token with write access)"
        )
    return token


def read_checkpoint(checkpoint: str | os.PathLike) -> tuple[Path, RunRecord | None]:
    """(folder, run record or None) of a checkpoint, its safetensors weights checked against its
    config (`load_weights`); a folder saved with plain transformers has no run record."""
    folder = Path(checkpoint)
    if not (folder / "config.json").is_file():
        raise HubError(
            f"{folder} is not a checkpoint folder: no config.json (expected OUTPUT_DIR/best of train.py)"
        )
    if not (folder / "model.safetensors").is_file():
        raise HubError(f"{folder} has no model.safetensors: only safetensors weights are published")
    model_type = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("model_type")
    if model_type != MusicTransformerForCausalLM.config_class.model_type:
        raise HubError(
            f"{folder} holds a {model_type!r} model; only music_transformer checkpoints are published"
        )
    try:
        load_weights(MusicTransformerForCausalLM, folder)  # a truncated or mismatched file is refused here
    except CheckpointError as error:
        raise HubError(str(error)) from error
    if not (folder / RECORD_FILE).is_file():
        return folder, None
    try:
        return folder, RunRecord.load(folder)
    except RunRecordError as error:
        raise HubError(str(error)) from error


def card_license(training_data: list[Corpus], requested: str | None = None) -> str:
    """MAESTRO's CC BY-NC-SA 4.0 binds any model trained on it; otherwise the data's own licence
    (when every corpus has the same one), else the caller's choice."""
    if any(corpus.kind == "maestro" for corpus in training_data):
        if requested and requested != MAESTRO_LICENSE:
            raise HubError(f"trained on MAESTRO, whose licence requires {MAESTRO_LICENSE}, not {requested}")
        return MAESTRO_LICENSE
    licenses = {corpus.license for corpus in training_data}
    known = licenses.pop() if len(licenses) == 1 else None
    return requested or known or "unknown"


def dataset_slug(corpus_name: str) -> str:
    """The model-index's dataset type for a corpus name: "maestro" for "MAESTRO v3.0.0".

    No Hub dataset holds MAESTRO officially, so cards carry no `datasets:` list; the data is
    named exactly in each result's dataset name and in the card's prose.
    """
    return corpus_name.split()[0].lower() if corpus_name else "unknown"


def eval_results(record: RunRecord | None, evaluations: list[Evaluation] = ()) -> list[EvalResult] | None:
    """model-index entries for exactly what was measured: each evaluated split of the named corpus,
    or, without an evaluation, train.py's best validation loss on its (last) training corpus."""
    common = {"task_type": "text-generation", "task_name": "Symbolic music modelling (performance events)"}
    evaluations = record.evaluations if record else list(evaluations)
    measured = [(e.corpus, e.split, e.model.nats_per_token) for e in evaluations]
    best = record.training.best_validation_nats_per_token if record else None
    if not measured and best is not None:
        measured.append((record.training_data[-1].name, "validation", best))
    results = []
    for corpus, split, nll in measured:
        data = {
            "dataset_type": dataset_slug(corpus),
            "dataset_name": f"{corpus} ({split} split)",
            "dataset_split": split,
        }
        for metric_type, name, value in (
            ("loss", "NLL (nats/token)", round(nll, 4)),
            ("perplexity", "Perplexity", round(math.exp(nll), 2)),
        ):
            results.append(
                EvalResult(metric_type=metric_type, metric_name=name, metric_value=value, **common, **data)
            )
    return results or None


def render_model_card(
    checkpoint: str | os.PathLike,
    repo_id: str,
    evaluations: list[Evaluation] = (),
    license: str | None = None,
    base_model: str | None = None,
    title: str | None = None,
    embedded: bool = False,
    template_path: str | os.PathLike = MODEL_CARD_TEMPLATE,
) -> ModelCard:
    """The model card of a checkpoint, rendered from its run record (plus `evaluations`) alone.

    `base_model` (a Hub id) defaults to the run's --init_from when that was a Hub id; `embedded`
    describes the checkpoint shipped inside hf_music (loaded with `load_default_model`).
    """
    folder, record = read_checkpoint(checkpoint)
    record = record.with_evaluations(list(evaluations)) if record else None
    if base_model is None and record and record.base_model and not Path(record.base_model).exists():
        base_model = record.base_model
    shape = record.model if record else model_shape(folder)
    card_data = ModelCardData(
        model_name=repo_id.split("/")[-1],
        license=card_license(record.training_data, license) if record else license or "unknown",
        library_name="transformers",
        pipeline_tag="text-generation",
        tags=TAGS,
        base_model=base_model,
        eval_results=eval_results(record, evaluations),
    )
    return ModelCard.from_template(
        card_data,
        template_path=str(template_path),
        model_name=title or repo_id.split("/")[-1],
        repo_id=repo_id,
        license=card_data.license,
        record=record,
        model=shape,
        evaluations=record.evaluations if record else list(evaluations),
        uniform_nll=math.log(shape.vocab_size),
        base_model=base_model,
        embedded=embedded,
    )


def model_shape(folder: Path) -> ModelShape:
    """What a checkpoint without a run record says of itself: its config and parameter count."""
    from safetensors import safe_open

    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    with safe_open(folder / "model.safetensors", "pt") as weights:
        parameters = sum(math.prod(weights.get_slice(name).get_shape()) for name in weights.keys())  # noqa: SIM118
    return ModelShape(
        parameters=parameters, n_layer=config["n_layer"], n_embd=config["n_embd"], n_head=config["n_head"],
        context=config["n_positions"], vocab_size=config["vocab_size"],
    )  # fmt: skip


def assemble_repo(
    checkpoint: str | os.PathLike,
    out_dir: str | os.PathLike,
    repo_id: str,
    evaluations: list[Evaluation] = (),
    samples: list[str | os.PathLike] = (),
    license: str | None = None,
    base_model: str | None = None,
    include_code: bool = True,
    title: str | None = None,
    embedded: bool = False,
) -> Path:
    """Write the folder that becomes the Hub repo: weights, config, tokenizer, code, card, run record
    (with `evaluations` added), samples.

    `include_code=False` leaves out the model's code files (a folder that only hf_music loads);
    `embedded` writes the card of the checkpoint shipped in the package; `title` replaces the
    repo name as the card's title.
    """
    check_repo_id(repo_id)
    folder, record = read_checkpoint(checkpoint)
    out = Path(out_dir)
    if out.resolve() == folder.resolve():
        raise HubError("the repo folder must differ from the checkpoint folder")
    card = render_model_card(
        folder, repo_id, evaluations=evaluations, license=license, base_model=base_model, title=title,
        embedded=embedded,
    )  # fmt: skip
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for name in CHECKPOINT_FILES:
        if (folder / name).is_file():
            shutil.copy2(folder / name, out / name)
    write_tokenizer(folder, out)
    if not include_code:
        (out / CODE_FILES[2]).unlink(missing_ok=True)  # save_pretrained writes the tokenizer's code
    if include_code:  # this package's code, never the folder's (which could have been edited)
        for name in CODE_FILES:
            shutil.copy2(CODE_DIR / name, out / name)
        if (folder / MIDITOK_PARAMS_FILE).is_file():  # a miditok vocabulary: its tokenizer's code
            shutil.copy2(CODE_DIR / "tokenization_miditok.py", out / "tokenization_miditok.py")
        else:  # the grammar (custom_generate/) is the performance vocabulary's
            write_custom_generate(out)
    if record:
        record.with_evaluations(list(evaluations)).save(out)
    if samples:
        (out / "samples").mkdir()
        for sample in samples:
            shutil.copy2(sample, out / "samples" / Path(sample).name)
    card.save(out / "README.md")
    return out


def write_tokenizer(checkpoint: Path, out: Path) -> None:
    """The checkpoint's tokenizer (performance events or a miditok vocabulary, read with the
    package's classes) saved into OUT: tokenizer_config.json with model_max_length = the model's
    context, tokenizer.json, and a miditok vocabulary's miditok_params.json."""
    tokenizer = saved_tokenizer(str(checkpoint))
    tokenizer.model_max_length = json.loads((checkpoint / "config.json").read_text())["n_positions"]
    tokenizer.save_pretrained(out)


def push_to_hub(
    checkpoint: str | os.PathLike,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    evaluations: list[Evaluation] = (),
    samples: list[str | os.PathLike] = (),
    license: str | None = None,
    base_model: str | None = None,
    token: str | None = None,
    work_dir: str | os.PathLike | None = None,
):
    """assemble_repo, then create_repo and upload_folder in one commit. Returns the CommitInfo."""
    import tempfile

    check_repo_id(repo_id)
    token = require_token(token)
    with tempfile.TemporaryDirectory() as tmp:
        folder = assemble_repo(
            checkpoint, Path(work_dir or tmp) / "repo", repo_id, evaluations=evaluations, samples=samples,
            license=license, base_model=base_model,
        )  # fmt: skip
        api = HfApi(token=token)
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        if revision:
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        return api.upload_folder(
            repo_id=repo_id,
            folder_path=folder,
            revision=revision,
            commit_message=commit_message or f"Upload Music Transformer ({Path(checkpoint).name})",
        )


def stage_space(space_dir: str | os.PathLike, out_dir: str | os.PathLike, model_id: str | None) -> Path:
    """The Space repo folder: space/ plus a copy of this hf_music package (it is not on PyPI),
    its card's `models` pointing at `model_id`."""
    from huggingface_hub import SpaceCard

    space = Path(space_dir)
    if not (space / "app.py").is_file() or not (space / "README.md").is_file():
        raise HubError(f"{space} is not a Space folder: it needs app.py and README.md")
    out = Path(out_dir)
    if out.exists():
        shutil.rmtree(out)
    # node_modules: the browser page's npm packages for its tests (148 MB), not part of the Space
    junk = shutil.ignore_patterns("__pycache__", "*.pyc", ".gradio", "flagged", "node_modules")
    shutil.copytree(space, out, ignore=junk)
    shutil.copytree(Path(__file__).resolve().parent, out / "hf_music", ignore=junk)
    card = SpaceCard.load(out / "README.md")
    card.data.models = [model_id] if model_id else []
    card.save(out / "README.md")
    return out


def deploy_space(
    space_dir: str | os.PathLike,
    space_id: str,
    model_id: str | None,
    *,
    private: bool = False,
    token: str | None = None,
    hardware: str | None = None,
):
    """Create or update a Gradio Space from `space_dir`; its HF_MUSIC_MODEL variable is `model_id`
    (None keeps the checkpoint embedded in hf_music). Returns the CommitInfo."""
    import tempfile

    check_repo_id(space_id)
    if model_id:
        check_repo_id(model_id)
    token = require_token(token)
    with tempfile.TemporaryDirectory() as tmp:
        folder = stage_space(space_dir, Path(tmp) / "space", model_id)
        api = HfApi(token=token)
        api.create_repo(space_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True)
        if model_id:
            api.add_space_variable(space_id, "HF_MUSIC_MODEL", model_id)
        if hardware:
            api.request_space_hardware(space_id, hardware)
        return api.upload_folder(
            repo_id=space_id,
            repo_type="space",
            folder_path=folder,
            commit_message=f"Deploy the hf_music Space ({model_id or 'embedded model'})",
        )


__all__ = [
    "HubError",
    "assemble_repo",
    "card_license",
    "check_repo_id",
    "deploy_space",
    "push_to_hub",
    "read_checkpoint",
    "render_model_card",
    "require_token",
    "stage_space",
]
