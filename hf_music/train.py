"""Train or fine-tune a Music Transformer with Accelerate: CPU, one GPU or many.

    python scripts/train.py --preset tiny --maestro_dir ../shared/data/maestro-mini --max_steps 2000
    accelerate launch --config_file scripts/accelerate/multi_gpu.yaml scripts/train.py --preset base ...
    python scripts/train.py --init_from runs/maestro/best --midi_dir my_midis --max_steps 500   # fine-tune
    python scripts/train.py --config my_run.yaml          # any argument below, from JSON or YAML
    python scripts/train.py --config default_model        # a recipe of the package (hf_music/assets/recipes)
    python scripts/train.py --tokens_file data/maestro-v3.0.0.tokens.npz ...  # a pack from prepare_data.py

Readable top to bottom, in the spirit of transformers' run_clm_no_trainer.py and nanoGPT:
data -> model -> optimizer -> loop (accumulate, clip, step, log, evaluate, checkpoint).
Checkpoints (Accelerate state + our counters) are written atomically to
OUTPUT_DIR/checkpoints/step_N; the best model by validation loss is exported with
save_pretrained (weights, tokenizer and code) to OUTPUT_DIR/best.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import shlex
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch.utils.data import DataLoader, StackDataset, TensorDataset
from tqdm.auto import tqdm
from transformers import get_scheduler
from transformers.utils import cached_file

import hf_music
from hf_music.evaluation import next_token_log_probs
from hf_music.flops import peak_flops, training_flops_per_token
from hf_music.hub import check_repo_id, push_to_hub
from hf_music.modeling_music_transformer import CUSTOM_GENERATE_DIR
from hf_music.music_tokenizer import offers_grammar
from hf_music.run_record import (
    RECORD_FILE,
    Corpus,
    ModelShape,
    RunRecord,
    SplitSize,
    Training,
    ValidationPoint,
)
from hf_music.token_pack import TokenPack, load_corpus, merged_pack
from hf_music.training_config import (
    CALIBRATION_STEPS,
    CONFIG_FILE,
    TrainingConfig,
    TrainingConfigError,
    add_arguments,
    config_path,
    read_config_file,
    recipes,
    resume_conflicts,
)
from hf_music.windows import Augmentation, WindowSampler, evaluation_blocks


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--config",
        default=None,
        help="a JSON or YAML file of options (the command line wins), or a recipe of hf_music by name: "
        + ", ".join(recipes()),
    )
    add_arguments(parser)  # one per TrainingConfig field: the dataclass is the one list of options
    return parser


def config_file_values(name: str) -> dict:
    """The options a --config file (or recipe) sets, type-checked, with their declared types."""
    path = config_path(name)
    values = read_config_file(path)
    config = TrainingConfig.from_dict(values, str(path))
    return {key: getattr(config, key) for key in values}


def resume_checkpoint(args) -> Path:
    """The folder --resume_from_checkpoint names; 'latest' is the last complete one of --output_dir."""
    if args.resume_from_checkpoint != "latest":
        return Path(args.resume_from_checkpoint)
    found = complete_checkpoints(Path(args.output_dir))
    if not found:
        raise SystemExit(
            f"--resume_from_checkpoint latest: no complete checkpoint in {args.output_dir}/checkpoints"
        )
    return found[-1]


def layered_args(parser, argv) -> argparse.Namespace:
    """The options from, weakest first: the defaults, a resumed checkpoint's training_config.json,
    --config's file, the command line. A resume refuses options that change the run it continues."""
    args = parser.parse_args(argv)
    file_values = config_file_values(args.config) if args.config else {}
    parser.set_defaults(**file_values)
    args = parser.parse_args(argv)
    if not args.resume_from_checkpoint:
        return args
    checkpoint = resume_checkpoint(args)
    if not (checkpoint / CONFIG_FILE).is_file():  # written before training configs were saved
        print(f"{checkpoint} has no {CONFIG_FILE}: the options are not checked against it")
        return args
    saved = TrainingConfig.load(checkpoint / CONFIG_FILE)
    parser.set_defaults(**{**saved.to_dict(), **file_values})
    args = parser.parse_args(argv)
    conflicts = resume_conflicts(saved, TrainingConfig.from_namespace(args))
    if conflicts:
        parser.error(
            f"--resume_from_checkpoint {checkpoint} continues a run these options would change (saved -> "
            f"given): {'; '.join(conflicts)}; drop them, or start a new run"
        )
    return args


def parse_args(argv=None):
    """The arguments, from the command line over --config's file (and a resumed checkpoint's
    config), checked against each other."""
    parser = build_parser()
    try:
        args = layered_args(parser, argv)
    except TrainingConfigError as error:
        parser.error(str(error))
    sources = [s for s in (args.maestro_dir, args.maestro_zip, args.midi_dir, args.tokens_file) if s]
    if len(sources) != 1:
        parser.error("give exactly one of --maestro_dir, --maestro_zip, --midi_dir, --tokens_file")
    if args.push_to_hub:
        if not args.hub_model_id:
            parser.error("--push_to_hub needs --hub_model_id namespace/name")
        check_repo_id(args.hub_model_id)  # fail now, not after hours of training
    if args.max_minutes and args.num_evaluations is None:
        args.num_evaluations = 10  # a count known before the run's length is: the budget holds them
    if args.max_minutes and args.warmup_steps < CALIBRATION_STEPS[1]:
        parser.error(
            f"--max_minutes needs --warmup_steps >= {CALIBRATION_STEPS[1]} (steps are timed in the warm-up)"
        )
    if args.bpe_vocab_size and (args.init_from or args.tokenizer not in (None, "performance")):
        parser.error(
            "--bpe_vocab_size builds a new vocabulary of performance events: drop --init_from/--tokenizer"
        )
    if args.bpe_vocab_size and args.augment:
        parser.error("--augment transposes event ids, which merged BPE tokens do not allow; drop one of them")
    if args.init_from and args.config_overrides:
        parser.error("--config_overrides builds a new model; it cannot change one given by --init_from")
    return args


def read_corpus(args, tokenizer) -> TokenPack:
    """The train and validation splits of the one source the arguments name, as a TokenPack."""
    return load_corpus(
        tokenizer, maestro=args.maestro_dir or args.maestro_zip, midi_dir=args.midi_dir,
        tokens_file=args.tokens_file, splits=("train", "validation"), maestro_version=args.maestro_version,
        validation_fraction=args.validation_fraction, seed=args.seed, num_proc=args.num_proc,
        max_seq_len=args.block_size, augment=args.augment,  # used by miditok vocabularies only
    )  # fmt: skip


def load_data(args, tokenizer, events: TokenPack | None = None) -> tuple[list, list, Corpus]:
    """Train and validation pieces (id arrays) and the corpus they came from (see load_corpus).

    ``events``: the corpus already read as performance events (to learn BPE merges on), merged
    with the tokenizer's merges instead of being read again.
    """
    pack = merged_pack(events, tokenizer) if events is not None else read_corpus(args, tokenizer)
    if "validation" not in pack.splits:
        raise SystemExit("the corpus has no validation split; raise --validation_fraction")
    about = pack.info["corpus"]  # the pack's own record of where its tokens came from
    corpus = Corpus(
        kind=about["corpus"], name=about["name"], source=about.get("source"), license=about.get("license")
    )
    return pack.pieces("train"), pack.pieces("validation"), corpus


def train_loader(sampler: WindowSampler, args, epoch):
    """One random window per piece, re-drawn (and re-augmented) every epoch, in a seeded order.

    The sampler cuts every window of an epoch in one vectorized numpy step (augmentation
    included), so even a GPU step of a few milliseconds never waits for data.
    """
    windows = sampler.epoch(epoch)
    order = np.random.default_rng([args.seed, epoch]).permutation(len(sampler))
    blocks = StackDataset(**{name: torch.from_numpy(array[order]) for name, array in windows.items()})
    # A generator of its own: creating the iterator then draws nothing from the global RNG,
    # so dropout noise after a resume is exactly what it would have been.
    generator = torch.Generator().manual_seed(args.seed + epoch)
    return DataLoader(
        blocks, batch_size=args.batch_size, shuffle=False, drop_last=True, generator=generator,
        pin_memory=torch.cuda.is_available(),
    )  # fmt: skip


@torch.no_grad()
def evaluate(model, loader, accelerator, max_batches=None):
    """Validation loss in nats/token over every real next-token prediction, gathered across processes."""
    model.eval()
    total_loss = torch.zeros((), device=accelerator.device, dtype=torch.float64)
    total_tokens = torch.zeros((), device=accelerator.device, dtype=torch.float64)
    batches = min(len(loader), max_batches if max_batches is not None else len(loader))
    bar = tqdm(total=batches, desc="evaluating", leave=False, disable=not accelerator.is_local_main_process)
    for step, (input_ids,) in enumerate(loader):
        if step >= batches:
            break
        bar.update(1)
        losses = -next_token_log_probs(model, input_ids)[0].double()
        # Per-sample sums, so gather_for_metrics can drop the samples duplicated to even out batches.
        per_sample = torch.stack([losses.sum(1), torch.full_like(losses[:, 0], losses.shape[1])], dim=1)
        sums = accelerator.gather_for_metrics(per_sample)
        total_loss += sums[:, 0].sum()
        total_tokens += sums[:, 1].sum()
    bar.close()
    model.train()
    loss = (total_loss / total_tokens.clamp(min=1)).item()
    return {
        "val_loss": loss,
        "val_perplexity": math.exp(min(loss, 50)),
        "val_tokens": int(total_tokens.item()),
    }


def training_data(args, corpus: Corpus) -> list[Corpus]:
    """Every corpus the model has learned from, its base model's first: a card's licence follows them."""
    corpora = []
    if args.init_from:
        found = cached_file(args.init_from, RECORD_FILE, _raise_exceptions_for_missing_entries=False)
        corpora = (
            RunRecord.load(found).training_data
            if found
            else [Corpus(kind="unknown", name=f"base model {args.init_from}", source=None, license=None)]
        )
    corpora.append(corpus)
    return corpora


def fsync_tree(folder: Path) -> None:
    """Flush every file of a folder (and the folder) to disk: a rename after it survives a power cut."""
    for path in [*folder.rglob("*"), folder]:
        descriptor = os.open(path, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def export_model(accelerator, model, tokenizer, folder: Path, record: RunRecord):
    """save_pretrained (weights, tokenizer, code, custom_generate) and the run record to a
    temporary folder, then swap it in."""
    if not accelerator.is_main_process:
        return
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model = accelerator.unwrap_model(model)
    model.save_pretrained(tmp, safe_serialization=True)  # with custom_generate/ (the grammar)
    if not offers_grammar(tokenizer):  # custom_generate/ is the performance grammar
        shutil.rmtree(tmp / CUSTOM_GENERATE_DIR)
    tokenizer.model_max_length = model.config.n_positions  # what the checkpoint's users may prompt with
    tokenizer.save_pretrained(tmp)  # tokenizer_config.json and the fast tokenizer.json
    record.save(tmp)
    fsync_tree(tmp)
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)


def stretch_schedule(scheduler, optimizer, args, max_steps: int):
    """Give the scheduler a new length, in the warm-up (whose rates do not depend on it)."""
    rates = [group["lr"] for group in optimizer.param_groups]
    fresh = get_scheduler(
        args.lr_scheduler, optimizer, num_warmup_steps=args.warmup_steps, num_training_steps=max_steps
    )
    scheduler.lr_lambdas = fresh.lr_lambdas
    for group, rate in zip(optimizer.param_groups, rates, strict=True):
        group["lr"] = rate


def time_evaluation(model, loader, accelerator, max_batches=None) -> float:
    """Seconds a full evaluation takes, from two timed batches (compiled already at step 0)."""
    started = time.perf_counter()
    evaluate(model, loader, accelerator, max_batches=2)
    batches = min(len(loader), max_batches or len(loader))
    return (time.perf_counter() - started) / min(2, batches) * batches


# --max_minutes: the share of the budget all evaluations together may take (step 0's included).
EVALUATION_SHARE = 0.1


def fit_evaluations(run: TrainingRun) -> None:
    """--max_minutes: cap the validation batches an evaluation scores (--max_eval_batches, kept in the
    run record and the checkpoint) so that the run's evaluations fit EVALUATION_SHARE of the budget.

    Timed on two batches after a warm-up one, before step 0's evaluation: unbounded, that one alone
    scored all 5,063 MAESTRO validation blocks in 6.5 min of a 3-minute run.
    """
    args, loader, accelerator = run.args, run.val_loader, run.accelerator
    evaluate(run.model, loader, accelerator, max_batches=1)  # warm-up (compilation, allocations)
    seconds_per_batch = time_evaluation(run.model, loader, accelerator, max_batches=2) / min(2, len(loader))
    evaluations = args.num_evaluations + 2  # step 0, the spread ones, and the end
    fitting = int(EVALUATION_SHARE * args.max_minutes * 60 / evaluations / max(seconds_per_batch, 1e-9))
    cap = max(1, min(fitting, args.max_eval_batches or len(loader), len(loader)))
    # Every process must score the same number of batches (gather_for_metrics waits for all).
    cap = int(accelerator.gather(torch.tensor([cap], device=accelerator.device)).min().item())
    args.max_eval_batches = run.state["max_eval_batches"] = cap
    accelerator.print(
        f"evaluations: {cap} of {len(loader)} validation batches each ({seconds_per_batch * cap:.1f} s), "
        f"{evaluations} of them within {EVALUATION_SHARE:.0%} of --max_minutes {args.max_minutes}"
    )


def steps_for_budget(args, seconds_per_step: float, elapsed: float, seconds_per_evaluation: float) -> int:
    """Optimizer steps that fit in what is left of --max_minutes, evaluations and saves included."""
    left = args.max_minutes * 60 - elapsed - (args.num_evaluations + 1) * seconds_per_evaluation
    return CALIBRATION_STEPS[1] + max(int(0.97 * left / seconds_per_step), 0)


def complete_checkpoints(output_dir: Path) -> list[Path]:
    """Finished checkpoints, oldest first (a folder is complete once renamed from *.tmp)."""
    folders = [
        p for p in (output_dir / "checkpoints").glob("step_*") if p.is_dir() and not p.name.endswith(".tmp")
    ]
    return sorted((p for p in folders if (p / "trainer_state.json").is_file()), key=lambda p: int(p.name[5:]))


# Our own files of a checkpoint, with no pickle: Accelerate's random_states_N.pkl is replaced (its
# loader skips a damaged one silently, and the run then differs) and the scheduler is plain JSON.
RNG_STATE_FILE = "rng_state_{}.safetensors"
SCHEDULER_FILE = "scheduler.json"


def rng_digest(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> str:
    digest = hashlib.sha256()
    for name in sorted(tensors):
        digest.update(name.encode() + tensors[name].contiguous().numpy().tobytes())
    digest.update(json.dumps({k: v for k, v in metadata.items() if k != "sha256"}, sort_keys=True).encode())
    return digest.hexdigest()


def save_rng_state(folder: Path, process_index: int) -> None:
    """This process's Python, numpy and torch (CPU and CUDA) RNG states, as safetensors with a sha256."""
    from safetensors.torch import save_file

    version, python_state, gauss_next = random.getstate()
    _, numpy_keys, numpy_pos, has_gauss, cached_gaussian = np.random.get_state()
    tensors = {
        "torch": torch.get_rng_state(),
        "python": torch.tensor(python_state, dtype=torch.int64),
        "numpy": torch.from_numpy(numpy_keys.astype(np.int64)),
    }
    if torch.cuda.is_available():
        tensors.update({f"cuda_{i}": state for i, state in enumerate(torch.cuda.get_rng_state_all())})
    metadata = {
        "python_version": str(version), "python_gauss_next": repr(gauss_next), "numpy_pos": str(numpy_pos),
        "numpy_has_gauss": str(has_gauss), "numpy_cached_gaussian": repr(cached_gaussian),
    }  # fmt: skip
    metadata["sha256"] = rng_digest(tensors, metadata)
    save_file(tensors, folder / RNG_STATE_FILE.format(process_index), metadata=metadata)
    (folder / f"random_states_{process_index}.pkl").unlink(missing_ok=True)  # Accelerate's pickled copy


def load_rng_state(folder: Path, process_index: int) -> None:
    """Restore what save_rng_state wrote; a missing or damaged file stops the resume in one line."""
    from safetensors import SafetensorError, safe_open

    path = folder / RNG_STATE_FILE.format(process_index)
    try:
        with safe_open(path, "pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
    except (OSError, SafetensorError) as error:
        raise SystemExit(
            f"{path}: the RNG state is missing or unreadable ({error}); resume another checkpoint"
        ) from None
    if metadata.get("sha256") != rng_digest(tensors, metadata):
        raise SystemExit(f"{path}: checksum mismatch: the RNG state is damaged; resume another checkpoint")
    gauss_next = None if metadata["python_gauss_next"] == "None" else float(metadata["python_gauss_next"])
    random.setstate((int(metadata["python_version"]), tuple(tensors["python"].tolist()), gauss_next))
    np.random.set_state((
        "MT19937", tensors["numpy"].numpy().astype(np.uint32), int(metadata["numpy_pos"]),
        int(metadata["numpy_has_gauss"]), float(metadata["numpy_cached_gaussian"]),
    ))  # fmt: skip
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[f"cuda_{i}"] for i in range(sum(name.startswith("cuda_") for name in tensors))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)


def save_checkpoint(
    accelerator, output_dir: Path, state: dict, limit: int, scheduler, config: TrainingConfig
):
    """Accelerate state, counters and the run's config, written to step_N.tmp and renamed: a kill
    never leaves a half one."""
    final = output_dir / "checkpoints" / f"step_{state['completed_steps']}"
    tmp = final.with_name(final.name + ".tmp")
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    save_rng_state(tmp, accelerator.process_index)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / SCHEDULER_FILE).write_text(json.dumps(scheduler.state_dict()))
        (tmp / "trainer_state.json").write_text(json.dumps(state, indent=2))
        config.save(tmp)
        fsync_tree(tmp)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        for old in complete_checkpoints(output_dir)[:-limit] if limit > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def training_mode(args, tokenizer) -> str:
    """Which of the two ways a run goes: a new model for its vocabulary, or a fine-tune keeping the base's.

    A model's embeddings belong to its vocabulary: a MAESTRO-trained performance model cannot take
    a miditok vocabulary, so a multi-instrument corpus is either learned from scratch with one, or
    fine-tuned with the performance vocabulary at the price of its instruments.
    """
    if not args.init_from:
        return f"training a new model from scratch with {tokenizer.vocabulary_description}"
    line = f"fine-tuning {args.init_from} with its own vocabulary, {tokenizer.vocabulary_description}"
    if not tokenizer.keeps_instruments:
        line += (
            ": instruments are lost (to keep them, train a new model: --tokenizer REMI "
            "--tokenizer_options use_programs=true, or --tokenizer MMM, without --init_from)"
        )
    return line


def check_tokenizer_choice(args, base_tokenizer) -> None:
    """--tokenizer with --init_from must name the base model's own vocabulary (its embeddings need it)."""
    if not args.tokenizer:
        return
    wanted = hf_music.load_tokenizer(args.tokenizer, args.tokenizer_options)
    if type(wanted) is not type(base_tokenizer) or wanted.get_vocab() != base_tokenizer.get_vocab():
        raise SystemExit(
            f"--init_from {args.init_from} has {base_tokenizer.vocabulary_description}; --tokenizer {args.tokenizer} is "
            "another one, and a model's embeddings belong to its vocabulary. Either train a new model with "
            "--tokenizer (drop --init_from), or fine-tune with the base's vocabulary (drop --tokenizer)."
        )


def learn_bpe(tokenizer, events: TokenPack, vocab_size: int):
    """The performance vocabulary with byte-pair merges learned on the train split's events."""
    started = time.perf_counter()
    learned = tokenizer.train_bpe(events.pieces("train"), vocab_size)
    print(
        f"learned {len(learned.bpe_merges)} BPE merges on {len(events.pieces('train'))} train pieces "
        f"in {time.perf_counter() - started:.1f} s"
    )
    return learned


def build_model(args, events: TokenPack | None = None):
    """(model, tokenizer): a new model of --preset (+ overrides), or --init_from's, with --dropout;
    with --bpe_vocab_size, the vocabulary is learned on ``events`` (the corpus as performance events)."""
    if args.init_from:
        # The package's own classes for music_transformer checkpoints: their code files never run.
        model, tokenizer = hf_music.load_model(args.init_from, trust_remote_code=args.trust_remote_code)
        check_tokenizer_choice(args, tokenizer)
        model.train()
    else:
        tokenizer = hf_music.load_tokenizer(args.tokenizer, args.tokenizer_options)
        if args.bpe_vocab_size:
            tokenizer = learn_bpe(tokenizer, events, args.bpe_vocab_size)
        # Learned positions past the training block would be untrained: the context is the block.
        overrides = {"n_positions": args.block_size, "vocab_size": tokenizer.vocab_size}
        config = hf_music.MusicTransformerConfig.from_preset(args.preset, **overrides)
        if args.config_overrides:
            config.update_from_string(args.config_overrides)
        model = hf_music.MusicTransformerForCausalLM(config)
    if args.dropout is not None:
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = args.dropout
        model.config.resid_pdrop = model.config.embd_pdrop = model.config.attn_pdrop = args.dropout
    if args.block_size > model.config.n_positions:
        raise SystemExit(
            f"--block_size {args.block_size} exceeds the model's n_positions {model.config.n_positions}"
        )
    return model, tokenizer


def build_optimizer(model, args, max_steps: int):
    """AdamW without weight decay on biases and LayerNorm weights (1-D tensors), and the LR schedule."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": args.weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    # Fused AdamW: one kernel for all parameters on a GPU (the CPU keeps the for-each path).
    optimizer = torch.optim.AdamW(
        groups, lr=args.learning_rate, betas=(0.9, 0.95), fused=torch.cuda.is_available()
    )
    scheduler = get_scheduler(
        args.lr_scheduler, optimizer, num_warmup_steps=args.warmup_steps, num_training_steps=max_steps
    )
    return optimizer, scheduler


def resume_state(args, accelerator, scheduler) -> dict:
    """The loop's counters: fresh, or loaded with the Accelerate state of --resume_from_checkpoint
    (model, optimizer), our RNG states and the scheduler's."""
    state = {"completed_steps": 0, "epoch": 0, "batches_in_epoch": 0, "best_val_loss": None, "history": []}
    if args.resume_from_checkpoint:
        checkpoint = resume_checkpoint(args)
        accelerator.load_state(str(checkpoint))
        load_rng_state(checkpoint, accelerator.process_index)
        scheduler.load_state_dict(json.loads((checkpoint / SCHEDULER_FILE).read_text()))
        state = json.loads((checkpoint / "trainer_state.json").read_text())
        accelerator.print(f"resumed from {checkpoint} at step {state['completed_steps']}")
    return state


def make_accelerator(args) -> Accelerator:
    """Accelerate for this run (mixed precision, accumulation, trackers) and a seeded start."""
    accelerator = Accelerator(
        mixed_precision=args.mixed_precision,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        log_with=None if args.report_to == "none" else args.report_to,
        project_dir=args.output_dir,
    )
    set_seed(args.seed)
    if accelerator.is_main_process:
        Path(args.output_dir).mkdir(parents=True, exist_ok=True)
    return accelerator


def validation_loader(validation: list, args) -> DataLoader:
    """Contiguous validation blocks of --block_size: the same cut as scripts/evaluate.py's."""
    blocks, _ = evaluation_blocks(validation, args.block_size)
    if len(blocks) == 0:
        raise SystemExit(f"validation split is shorter than one block of {args.block_size} tokens")
    return DataLoader(TensorDataset(torch.from_numpy(blocks)), batch_size=args.batch_size)


def evaluation_interval(args, max_steps: int) -> int:
    """Steps between evaluations: --num_evaluations spread evenly, else --eval_steps."""
    return max(1, max_steps // args.num_evaluations) if args.num_evaluations else args.eval_steps


def plan_steps(args, train_pieces: int, processes: int) -> int:
    """Optimizer steps of the run: --max_steps, else --num_epochs of one window per piece."""
    batches_per_epoch = train_pieces // args.batch_size // processes
    if batches_per_epoch == 0:
        raise SystemExit(f"the train split has {train_pieces} pieces: fewer than one batch per process")
    return args.max_steps or args.num_epochs * max(1, batches_per_epoch // args.gradient_accumulation_steps)


@dataclass
class TrainingRun:
    """What the loop reads and changes, so that each part of it is a short function of one run."""

    args: argparse.Namespace
    accelerator: Accelerator
    model: torch.nn.Module
    tokenizer: object
    optimizer: torch.optim.Optimizer
    scheduler: object
    sampler: WindowSampler
    val_loader: DataLoader
    training_data: list[Corpus]
    train_size: SplitSize
    validation_size: SplitSize
    command: str
    state: dict  # the counters saved with every checkpoint (trainer_state.json)
    max_steps: int
    eval_steps: int
    started: float = field(default_factory=time.perf_counter)  # this (re)start
    seconds_before: float = 0.0  # wall time of the earlier (re)starts
    calibration_started: float = 0.0

    @property
    def output_dir(self) -> Path:
        return Path(self.args.output_dir)

    @property
    def wall_seconds(self) -> float:
        """Over all (re)starts, evaluations included: what the card reports."""
        return round(self.seconds_before + time.perf_counter() - self.started, 1)


def run_record(run: TrainingRun, tokens_per_second: float | None = None) -> RunRecord:
    """The typed record of the run so far, for the exported model's card and the run folder."""
    args, state = run.args, run.state
    model = run.accelerator.unwrap_model(run.model)
    config = model.config
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    processes = run.accelerator.num_processes
    training = Training(
        command=run.command, args=vars(args), completed_steps=state["completed_steps"], max_steps=run.max_steps,
        tokens_per_step=args.batch_size * args.gradient_accumulation_steps * processes * args.block_size,
        processes=processes, device=device,
        versions={"hf_music": hf_music.__version__, "torch": torch.__version__},
        wall_seconds=float(state.get("train_seconds", 0.0)), tokens_per_second=tokens_per_second,
        best_validation_nats_per_token=state["best_val_loss"],
        history=[ValidationPoint(h["step"], h["val_loss"], h["val_tokens"]) for h in state["history"]],
    )  # fmt: skip
    shape = ModelShape(
        parameters=sum(p.numel() for p in model.parameters()), n_layer=config.n_layer, n_embd=config.n_embd,
        n_head=config.n_head, context=config.n_positions, vocab_size=config.vocab_size,
        bpe_merges=len(getattr(run.tokenizer, "bpe_merges", None) or []),
    )  # fmt: skip
    return RunRecord(
        model=shape, training_data=run.training_data, base_model=args.init_from, train=run.train_size,
        validation=run.validation_size, training=training, evaluations=[],
    )  # fmt: skip


def run_evaluation(run: TrainingRun) -> None:
    """Validation loss now; a new best is exported to OUTPUT_DIR/best with its run record."""
    state = run.state
    metrics = evaluate(run.model, run.val_loader, run.accelerator, run.args.max_eval_batches)
    metrics["step"] = state["completed_steps"]
    state["train_seconds"] = run.wall_seconds
    state["history"].append(metrics)
    run.accelerator.log(metrics, step=state["completed_steps"])
    run.accelerator.print(
        f"step {state['completed_steps']}: validation loss {metrics['val_loss']:.4f} nats/token, "
        f"perplexity {metrics['val_perplexity']:.2f}"
    )
    if state["best_val_loss"] is None or metrics["val_loss"] < state["best_val_loss"]:
        state["best_val_loss"] = metrics["val_loss"]
        export_model(run.accelerator, run.model, run.tokenizer, run.output_dir / "best", run_record(run))


class Meter:
    """Loss and token counts, kept on the device between log steps: reading them every step would
    make the CPU wait for the GPU, and a small model's step is mostly kernel launches."""

    def __init__(self, device):
        self.zero = torch.zeros((), device=device, dtype=torch.float64)
        self.train_tokens = self.zero.clone()  # over the whole loop
        self.loop_started, self.paused_seconds = time.perf_counter(), 0.0
        self.reset()

    def reset(self) -> None:
        self.tokens, self.loss, self.micro_steps = self.zero.clone(), self.zero.clone(), 0
        self.since = time.perf_counter()

    def add(self, loss: torch.Tensor, tokens: torch.Tensor) -> None:
        self.tokens += tokens
        self.train_tokens += tokens
        self.loss += loss.detach()
        self.micro_steps += 1

    def logs(self) -> dict:
        """Mean training loss and tokens/s since the last call (which resets them)."""
        logs = {
            "train_loss": self.loss.item() / self.micro_steps,
            "tokens_per_second": self.tokens.item() / (time.perf_counter() - self.since),
        }
        self.reset()
        return logs

    def tokens_per_second(self) -> float:
        """Over the whole loop, evaluations and checkpoints left out."""
        seconds = time.perf_counter() - self.loop_started - self.paused_seconds
        return self.train_tokens.item() / max(seconds, 1e-9)


def calibrate(run: TrainingRun, step: int, meter: Meter, progress) -> None:
    """--max_minutes: time steps 10-40 and one evaluation, then fix the run's length to fit."""
    meter.train_tokens.item()  # waits for the GPU: the steps timed are finished ones
    if step == CALIBRATION_STEPS[0]:
        run.calibration_started = time.perf_counter()
        return
    seconds_per_step = (time.perf_counter() - run.calibration_started) / (step - CALIBRATION_STEPS[0])
    seconds_per_evaluation = time_evaluation(
        run.model, run.val_loader, run.accelerator, run.args.max_eval_batches
    )
    elapsed = time.perf_counter() - run.started
    run.max_steps = steps_for_budget(run.args, seconds_per_step, elapsed, seconds_per_evaluation)
    run.eval_steps = (
        evaluation_interval(run.args, run.max_steps) if run.args.num_evaluations else run.eval_steps
    )
    run.state.update(max_steps=run.max_steps, eval_steps=run.eval_steps)
    stretch_schedule(run.scheduler, run.optimizer, run.args, run.max_steps)
    progress.total = run.max_steps
    fit = f"{run.max_steps} steps fit {run.args.max_minutes} min"
    if elapsed >= run.args.max_minutes * 60:  # the timing steps are the floor of any run
        fit = (
            f"the {step} steps timed took {elapsed:.0f} s, past the {run.args.max_minutes} min budget: "
            f"training ends at step {run.max_steps}"
        )
    run.accelerator.print(f"\n{seconds_per_step * 1000:.1f} ms/step: {fit}")


def log_step(run: TrainingRun, step: int, meter: Meter, progress) -> None:
    logs = {**meter.logs(), "learning_rate": run.scheduler.get_last_lr()[0]}
    peak = peak_flops(torch.cuda.get_device_name()) if torch.cuda.is_available() else None
    if peak:
        flops = training_flops_per_token(run.accelerator.unwrap_model(run.model).config, run.args.block_size)
        logs["mfu"] = flops * logs["tokens_per_second"] / (peak * run.accelerator.num_processes)
    run.accelerator.log(logs, step=step)
    progress.set_postfix(loss=f"{logs['train_loss']:.3f}", tok_s=f"{logs['tokens_per_second']:.0f}")


def train_step(run: TrainingRun, batch: dict) -> torch.Tensor:
    """One forward/backward (an optimizer step when the accumulation is complete); the loss."""
    with run.accelerator.accumulate(run.model):
        # Right padding only, in a causal model: no attention mask needed (flash SDPA).
        # use_cache=False: no KV cache to build, and no per-layer cache state for torch.compile
        # to guard on (with one, every block recompiled and the 9th ran uncompiled).
        loss = run.model(input_ids=batch["input_ids"], labels=batch["labels"], use_cache=False).loss
        run.accelerator.backward(loss)
        if run.accelerator.sync_gradients:
            run.accelerator.clip_grad_norm_(run.model.parameters(), run.args.max_grad_norm)
        run.optimizer.step()
        run.optimizer.zero_grad()
    return loss


def train_loop(run: TrainingRun) -> Meter:
    """Epochs of fresh windows until max_steps: step, log, evaluate, checkpoint."""
    args, state, accelerator = run.args, run.state, run.accelerator
    meter = Meter(accelerator.device)
    progress = tqdm(total=run.max_steps, initial=state["completed_steps"], desc="training",
                    disable=not accelerator.is_local_main_process)  # fmt: skip
    if state["completed_steps"] == 0:
        if args.max_minutes:
            fit_evaluations(run)
        run_evaluation(run)  # the starting point of the curve
    while state["completed_steps"] < run.max_steps:
        loader = accelerator.prepare(train_loader(run.sampler, args, state["epoch"]))
        if state["batches_in_epoch"]:
            loader = accelerator.skip_first_batches(loader, state["batches_in_epoch"])
        for batch in loader:
            loss = train_step(run, batch)
            state["batches_in_epoch"] += 1
            meter.add(loss, (batch["labels"] != -100).sum() * accelerator.num_processes)
            if not accelerator.sync_gradients:
                continue
            run.scheduler.step()
            state["completed_steps"] += 1
            progress.update(1)
            step = state["completed_steps"]
            if args.max_minutes and "max_steps" not in state and step in CALIBRATION_STEPS:
                calibrate(run, step, meter, progress)
            if step % args.log_steps == 0 or step == run.max_steps:
                log_step(run, step, meter, progress)
            pause = time.perf_counter()
            if step % run.eval_steps == 0 or step == run.max_steps:
                run_evaluation(run)
            if step % args.checkpointing_steps == 0 or step == run.max_steps:
                save_checkpoint(
                    accelerator, run.output_dir, state, args.checkpoints_total_limit, run.scheduler,
                    TrainingConfig.from_namespace(args),  # with the fitted --max_eval_batches
                )  # fmt: skip
            meter.paused_seconds += time.perf_counter() - pause
            if step >= run.max_steps:
                break
        else:  # the epoch ran out: draw new windows
            state["epoch"] += 1
            state["batches_in_epoch"] = 0
    progress.close()
    return meter


def main(argv=None):
    args = parse_args(argv)
    accelerator = make_accelerator(args)
    if accelerator.is_main_process:
        TrainingConfig.from_namespace(args).save(args.output_dir)  # what this run was asked to do

    # ---- model and data
    with accelerator.main_process_first():  # the first process fills the datasets cache
        # BPE merges are learned on the corpus's events, which are then merged, not read again.
        events = None
        if args.bpe_vocab_size:
            events = read_corpus(args, hf_music.load_tokenizer(args.tokenizer, args.tokenizer_options))
    model, tokenizer = build_model(args, events)
    accelerator.print(training_mode(args, tokenizer))
    with accelerator.main_process_first():
        train, validation, corpus = load_data(args, tokenizer, events)
    # A vocabulary augmented (and split) as Scores while the corpus was read gets no window augmentation.
    augmentation = Augmentation() if args.augment and tokenizer.augmentation_stage == "windows" else None
    sampler = WindowSampler(train, args.block_size, tokenizer, augmentation, args.seed)
    val_loader = validation_loader(validation, args)
    max_steps = plan_steps(args, len(train), accelerator.num_processes)

    # ---- optimizer, schedule, devices
    optimizer, scheduler = build_optimizer(model, args, max_steps)
    if args.compile:
        # Regional compilation: the blocks share one compiled graph, so compiling takes the time
        # of one block, not of the whole stack (the model stays a plain module for saving).
        for block in model.transformer.h:
            block.compile()
    # The scheduler is stepped once per optimizer step by us, and saved as JSON with each checkpoint.
    model, optimizer, val_loader = accelerator.prepare(model, optimizer, val_loader)

    # ---- resume
    state = resume_state(args, accelerator, scheduler)
    eval_steps = evaluation_interval(args, max_steps)
    if state.get("max_steps"):  # a resumed run whose length --max_minutes fixed
        max_steps, eval_steps = state["max_steps"], state["eval_steps"]
        stretch_schedule(scheduler, optimizer, args, max_steps)
    args.max_eval_batches = state.get("max_eval_batches", args.max_eval_batches)
    run = TrainingRun(
        args, accelerator, model, tokenizer, optimizer, scheduler, sampler, val_loader,
        training_data=training_data(args, corpus),
        train_size=SplitSize(len(train), sum(len(ids) for ids in train)),
        validation_size=SplitSize(len(validation), sum(len(ids) for ids in validation)),
        command=shlex.join(["python", "scripts/train.py", *(sys.argv[1:] if argv is None else argv)]),
        state=state, max_steps=max_steps, eval_steps=eval_steps, seconds_before=state.get("train_seconds", 0.0),
    )  # fmt: skip
    if args.report_to != "none":
        accelerator.init_trackers("hf_music", config={k: v for k, v in vars(args).items() if v is not None})
    accelerator.print(
        f"{run_record(run).model.parameters / 1e6:.2f}M parameters, {len(train)} train pieces, "
        f"{len(val_loader.dataset)} validation blocks of {args.block_size}, {accelerator.num_processes} "
        f"process(es) on {accelerator.device}, {max_steps} steps"
    )

    # ---- train, then the record of the whole run
    meter = train_loop(run)
    if accelerator.is_main_process:
        run_record(run, meter.tokens_per_second()).save(run.output_dir)
        accelerator.print(
            f"best validation loss {state['best_val_loss']:.4f} nats/token; model in {run.output_dir / 'best'}"
        )
        if args.push_to_hub:  # the same code as scripts/push_to_hub.py
            commit = push_to_hub(run.output_dir / "best", args.hub_model_id, private=args.hub_private)
            accelerator.print(f"pushed to {commit.commit_url}")
    accelerator.end_training()
    return state


if __name__ == "__main__":
    main()
