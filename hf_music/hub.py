"""Publishing to the Hugging Face Hub: the model card, the repo folder, and the upload.

    folder = assemble_repo("runs/maestro/best", "out/repo", repo_id="me/music-transformer")
    push_to_hub("runs/maestro/best", "me/music-transformer")   # assemble + create_repo + one commit

The card is rendered from the top-level ``model_card.md`` (a Jinja template, shipped in the
package as ``assets/model_card.md``) with figures read from the checkpoint's
``training_metrics.json`` (written by scripts/train.py) and, when given, the JSON of
scripts/evaluate.py. ``HF_TOKEN`` and ``HF_ENDPOINT`` are honoured by huggingface_hub itself.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

from huggingface_hub import EvalResult, HfApi, ModelCard, ModelCardData

from .resources import ASSETS

MODEL_CARD_TEMPLATE = ASSETS / "model_card.md"
# Files of a save_pretrained checkpoint that belong in a Hub repo (code files are added by suffix).
CHECKPOINT_FILES = (
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "training_metrics.json",
    "miditok_params.json",  # a MiditokTokenizer's vocabulary (miditok's own params file)
    "tokenizer.json",
)
# The model's own code, copied from the package when a checkpoint folder lacks it (trust_remote_code).
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
    if isinstance(error, HubError):
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


def read_checkpoint(checkpoint: str | os.PathLike) -> tuple[Path, dict, dict]:
    """(folder, config, training metrics) of a save_pretrained folder, checked for safetensors weights."""
    folder = Path(checkpoint)
    if not (folder / "config.json").is_file():
        raise HubError(
            f"{folder} is not a checkpoint folder: no config.json (expected OUTPUT_DIR/best of train.py)"
        )
    if not (folder / "model.safetensors").is_file():
        raise HubError(f"{folder} has no model.safetensors: only safetensors weights are published")
    config = json.loads((folder / "config.json").read_text())
    metrics_path = folder / "training_metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    return folder, config, metrics


def card_license(training_data: list[dict], requested: str | None = None) -> str:
    """MAESTRO's CC BY-NC-SA 4.0 binds any model trained on it; otherwise the caller's choice."""
    if any(corpus.get("corpus") == "maestro" for corpus in training_data):
        if requested and requested != MAESTRO_LICENSE:
            raise HubError(f"trained on MAESTRO, whose licence requires {MAESTRO_LICENSE}, not {requested}")
        return MAESTRO_LICENSE
    return requested or "unknown"


def dataset_slug(corpus_name: str) -> str:
    """The model-index's dataset type for a corpus name: "maestro" for "MAESTRO v3.0.0".

    No Hub dataset holds MAESTRO officially, so cards carry no `datasets:` list; the data is
    named exactly in each result's dataset name and in the card's prose.
    """
    return corpus_name.split()[0].lower() if corpus_name else "unknown"


def eval_results(metrics: dict, evaluation: dict | None) -> list[EvalResult] | None:
    """model-index entries for exactly what was measured: each evaluated split of the named corpus,
    or, without an evaluation, train.py's best validation loss on its (last) training corpus."""
    common = {"task_type": "text-generation", "task_name": "Symbolic music modelling (performance events)"}
    measured = []  # (corpus name, split, nats/token)
    if evaluation:
        for split, result in evaluation.get("splits", {}).items():
            model_row = next(row for row in result["language_model"] if row["name"] == "model")
            measured.append((evaluation["corpus"], split, model_row["nll"]))
    elif metrics.get("best_val_loss") is not None and metrics.get("training_data"):
        measured.append((metrics["training_data"][-1]["name"], "validation", metrics["best_val_loss"]))
    results = []
    for corpus, split, nll in measured:
        data = {
            "dataset_type": dataset_slug(corpus),
            "dataset_name": f"{corpus} ({split} split)",
            "dataset_split": split,
        }
        results.append(
            EvalResult(
                metric_type="loss",
                metric_name="NLL (nats/token)",
                metric_value=round(nll, 4),
                **common,
                **data,
            )
        )
        results.append(
            EvalResult(
                metric_type="perplexity",
                metric_name="Perplexity",
                metric_value=round(math.exp(nll), 2),
                **common,
                **data,
            )
        )
    return results or None


def render_model_card(
    checkpoint: str | os.PathLike,
    repo_id: str,
    evaluation: dict | None = None,
    license: str | None = None,
    base_model: str | None = None,
    title: str | None = None,
    embedded: bool = False,
    template_path: str | os.PathLike = MODEL_CARD_TEMPLATE,
) -> ModelCard:
    """The model card of a checkpoint, with metadata (licence, tags, model-index) and real figures.

    `base_model` (a Hub id) defaults to the run's --init_from when that was a Hub id; `embedded`
    describes the checkpoint shipped inside hf_music (loaded with `load_default_model`).
    """
    _, config, metrics = read_checkpoint(checkpoint)
    args = metrics.get("args", {})
    training_data = metrics.get("training_data", [])
    val_loss = metrics.get("best_val_loss")
    dataset_name = " + ".join(corpus["name"] for corpus in training_data) or "unknown"
    init_from = args.get("init_from")
    if base_model is None and init_from and not Path(init_from).exists():
        base_model = init_from
    card_data = ModelCardData(
        model_name=repo_id.split("/")[-1],
        license=card_license(training_data, license),
        library_name="transformers",
        pipeline_tag="text-generation",
        tags=TAGS,
        base_model=base_model,
        eval_results=eval_results(metrics, evaluation),
    )
    history = metrics.get("history", [])
    return ModelCard.from_template(
        card_data,
        template_path=str(template_path),
        model_name=title or repo_id.split("/")[-1],
        repo_id=repo_id,
        license=card_data.license,
        config=config,
        args=args,
        metrics=metrics,
        training_data=training_data,
        dataset_name=dataset_name,
        val_loss=val_loss,
        val_perplexity=math.exp(val_loss) if val_loss is not None else None,
        first_val_loss=history[0]["val_loss"] if history else None,
        uniform_nll=math.log(config["vocab_size"]),
        train_hours=metrics.get("train_seconds", 0) / 3600,
        evaluation=evaluation,
        base_model=base_model,
        embedded=embedded,
    )


def assemble_repo(
    checkpoint: str | os.PathLike,
    out_dir: str | os.PathLike,
    repo_id: str,
    evaluation: dict | None = None,
    samples: list[str | os.PathLike] = (),
    license: str | None = None,
    base_model: str | None = None,
    include_code: bool = True,
    title: str | None = None,
    embedded: bool = False,
) -> Path:
    """Write the folder that becomes the Hub repo: weights, config, tokenizer, code, card, metrics, samples.

    `include_code=False` leaves out the model's code files (a folder that only hf_music loads);
    `embedded` writes the card of the checkpoint shipped in the package; `title` replaces the
    repo name as the card's title.
    """
    check_repo_id(repo_id)
    folder, _, _ = read_checkpoint(checkpoint)
    out = Path(out_dir)
    if out.resolve() == folder.resolve():
        raise HubError("the repo folder must differ from the checkpoint folder")
    card = render_model_card(
        folder, repo_id, evaluation=evaluation, license=license, base_model=base_model, title=title,
        embedded=embedded,
    )  # fmt: skip
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for name in CHECKPOINT_FILES:
        if (folder / name).is_file():
            shutil.copy2(folder / name, out / name)
    if include_code:
        package = Path(__file__).resolve().parent
        for name in CODE_FILES:
            shutil.copy2(folder / name if (folder / name).is_file() else package / name, out / name)
        if (folder / "tokenization_miditok.py").is_file():  # a checkpoint with a miditok vocabulary
            shutil.copy2(folder / "tokenization_miditok.py", out / "tokenization_miditok.py")
    if evaluation is not None:
        (out / "evaluation.json").write_text(json.dumps(evaluation, indent=2))
    if samples:
        (out / "samples").mkdir()
        for sample in samples:
            shutil.copy2(sample, out / "samples" / Path(sample).name)
    card.save(out / "README.md")
    return out


def push_to_hub(
    checkpoint: str | os.PathLike,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    evaluation: dict | None = None,
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
            checkpoint, Path(work_dir or tmp) / "repo", repo_id, evaluation=evaluation, samples=samples,
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
    junk = shutil.ignore_patterns("__pycache__", "*.pyc", ".gradio", "flagged")
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
