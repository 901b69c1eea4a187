"""scripts/train.py end to end on CPU: learning, resume, two processes, fine-tuning, config files.

Each run is a real subprocess with real Accelerate, as a user would start it.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import MAESTRO_MINI, POP909
from fake_hub import FakeHub
from huggingface_hub import ModelCard
from safetensors.torch import load_file

from hf_music.run_record import Corpus, RunRecord
from hf_music.train import CALIBRATION_STEPS
from hf_music.training_config import CONFIG_FILE, TrainingConfig

REPO = Path(__file__).resolve().parents[1]
TRAIN = REPO / "scripts" / "train.py"
COMMON = ["--block_size", "256", "--report_to", "none", "--warmup_steps", "10", "--seed", "0"]


def train(output_dir, *args, launcher=(sys.executable,), timeout=600, env=None):
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1", **(env or {})}
    if launcher[0] != sys.executable:
        env["ACCELERATE_USE_CPU"] = "1"
    cmd = [*launcher, str(TRAIN), "--output_dir", str(output_dir), *COMMON, *map(str, args)]
    result = subprocess.run(
        cmd, capture_output=True, text=True, env=env, timeout=timeout, cwd=output_dir.parent
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return RunRecord.load(output_dir)  # the record of the whole run


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny model trained on maestro-mini: the learning run, reused by the fine-tuning test."""
    out = tmp_path_factory.mktemp("train") / "maestro"
    metrics = train(
        out, "--maestro_dir", MAESTRO_MINI, "--max_steps", 150, "--eval_steps", 50, "--batch_size", 8
    )
    return out, metrics


@pytest.mark.slow
def test_tiny_run_learns_on_maestro_mini(trained):
    out, record = trained
    curve = [point.nats_per_token for point in record.training.history]
    assert [point.step for point in record.training.history] == [0, 50, 100, 150]
    assert abs(curve[0] - math.log(391)) < 0.3  # starts at chance
    assert curve[-1] < curve[0] - 1.2, curve  # and learns a lot in 150 steps (measured: 6.00 -> 4.32)
    assert record.training.best_validation_nats_per_token == min(curve)
    assert record.training.best_validation_perplexity == pytest.approx(math.exp(min(curve)))
    assert record.training.completed_steps == 150 and record.training.tokens_per_second > 0
    assert record.training.tokens_per_step == 8 * 256 and record.model.context == 256
    best = out / "best"
    assert {"model.safetensors", "config.json", "tokenizer_config.json", "modeling_music_transformer.py"} <= {
        p.name for p in best.iterdir()
    }
    exported = RunRecord.load(best)  # the record as it stood when the best model was exported
    assert exported.training.best_validation_nats_per_token == min(curve)
    assert exported.training.tokens_per_second is None  # measured only once the run has ended
    assert exported.model == record.model and exported.training_data == record.training_data


def final_weights(out: Path, step: int) -> dict[str, torch.Tensor]:
    return load_file(out / "checkpoints" / f"step_{step}" / "model.safetensors")


@pytest.mark.slow
def test_resume_gives_the_same_weights_and_loss(tmp_path):
    args = ["--maestro_dir", MAESTRO_MINI, "--max_steps", 8, "--eval_steps", 4, "--checkpointing_steps", 4]
    args += ["--batch_size", 4, "--checkpoints_total_limit", 5, "--augment"]
    straight = train(tmp_path / "straight", *args)
    # A second run that crashed after its step-4 checkpoint: it has that checkpoint, a
    # half-written step_6.tmp and a step_5 folder without its state file; 'latest' skips both.
    resumed_dir = tmp_path / "resumed"
    (resumed_dir / "checkpoints").mkdir(parents=True)
    shutil.copytree(tmp_path / "straight" / "checkpoints" / "step_4", resumed_dir / "checkpoints" / "step_4")
    (resumed_dir / "checkpoints" / "step_6.tmp").mkdir()
    (resumed_dir / "checkpoints" / "step_5").mkdir()
    # The checkpoint's training_config.json is the run's: a flag that would change it is refused,
    # each named with both values, before anything is loaded.
    refused = subprocess.run(
        [sys.executable, str(TRAIN), "--output_dir", str(resumed_dir), *COMMON, "--resume_from_checkpoint",
         "latest", "--learning_rate", "2e-3", "--batch_size", "8", "--eval_steps", "2"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert (
        refused.stderr.strip()
        .splitlines()[-1]
        .endswith(
            f"--resume_from_checkpoint {resumed_dir / 'checkpoints' / 'step_4'} continues a run these options "
            "would change (saved -> given): --batch_size 4 -> 8; --learning_rate 0.001 -> 0.002; drop them, or "
            "start a new run"
        )
    )
    assert not (resumed_dir / "run_record.json").exists()
    # Harmless flags may differ, and the options not given are the saved ones (data, batch, steps...).
    resumed = train(resumed_dir, "--resume_from_checkpoint", "latest", "--log_steps", 1)
    saved = TrainingConfig.load(resumed_dir / CONFIG_FILE)
    assert (saved.log_steps, saved.batch_size, saved.maestro_dir) == (1, 4, str(MAESTRO_MINI))
    a, b = final_weights(tmp_path / "straight", 8), final_weights(resumed_dir, 8)
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=name)
    assert resumed.training.history[-1] == straight.training.history[-1]
    assert resumed.training.history == straight.training.history  # the curve carries over the restart
    # No pickle in a checkpoint: RNG states are safetensors with a sha256, the scheduler JSON.
    step_4 = tmp_path / "straight" / "checkpoints" / "step_4"
    assert {"rng_state_0.safetensors", "scheduler.json"} <= {p.name for p in step_4.iterdir()}
    assert not list(step_4.glob("*.pkl"))
    # The run's typed config, in the output folder and in every checkpoint.
    for folder in (tmp_path / "straight", step_4, tmp_path / "straight" / "checkpoints" / "step_8"):
        config = TrainingConfig.load(folder / CONFIG_FILE)
        assert (config.max_steps, config.batch_size, config.augment, config.block_size) == (8, 4, True, 256)
    # A damaged RNG state (one flipped byte) stops the resume in one line instead of being skipped.
    damaged_dir = tmp_path / "damaged"
    damaged = shutil.copytree(step_4, damaged_dir / "checkpoints" / "step_4")
    rng = bytearray((damaged / "rng_state_0.safetensors").read_bytes())
    rng[-1] ^= 1
    (damaged / "rng_state_0.safetensors").write_bytes(bytes(rng))
    result = subprocess.run(
        [sys.executable, str(TRAIN), "--output_dir", str(damaged_dir), *COMMON, *map(str, args),
         "--resume_from_checkpoint", "latest"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"{damaged / 'rng_state_0.safetensors'}: checksum mismatch: the RNG state is damaged; "
        "resume another checkpoint"
    )


@pytest.mark.slow
def test_two_processes_match_one_with_the_same_global_batch(tmp_path):
    args = ["--maestro_dir", MAESTRO_MINI, "--max_steps", 6, "--eval_steps", 6, "--dropout", 0.0]
    single = train(tmp_path / "single", *args, "--batch_size", 8)
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
    double = train(
        tmp_path / "double",
        *args,
        "--batch_size",
        4,
        launcher=(torchrun, "--nproc_per_node", "2", "--master_port", "29533"),
    )
    assert double.training.processes == 2 and single.training.processes == 1
    first, last = single.training.history[0].nats_per_token, single.training.history[-1].nats_per_token
    assert last < first - 0.1  # both trained, and by the same amount:
    assert double.training.history[-1].nats_per_token == pytest.approx(last, rel=1e-4)
    assert double.training.history[-1].tokens == single.training.history[-1].tokens
    assert double.training.tokens_per_step == single.training.tokens_per_step == 8 * 256


@pytest.mark.slow
def test_fine_tuning_on_a_new_corpus(trained, tmp_path):
    base, _ = trained
    out = tmp_path / "pop909"
    with FakeHub() as hub:  # a local stand-in for the Hub: --push_to_hub at the end of the run
        record = train(
            out, "--init_from", base / "best", "--midi_dir", POP909, "--max_steps", 40, "--eval_steps", 20,
            "--push_to_hub", "--hub_model_id", "someone/pop-transformer",
            env={"HF_ENDPOINT": hub.url, "HF_TOKEN": "hf_test_token", "HF_HOME": str(tmp_path / "hf_home")},
        )  # fmt: skip
    curve = [point.nats_per_token for point in record.training.history]
    assert curve[-1] < curve[0] - 0.1, curve
    assert record.base_model == str(base / "best")
    (commit,) = hub.commits
    assert commit["repo"] == "someone/pop-transformer"
    assert commit["files"]["model.safetensors"] == (out / "best" / "model.safetensors").read_bytes()
    card = ModelCard(commit["files"]["README.md"].decode())
    # The base model learned from MAESTRO, so its licence binds the fine-tune too.
    assert card.data.license == "cc-by-nc-sa-4.0"
    assert (
        "- maestro-mini (MAESTRO v3.0.0 layout)" in card.text and "- pop909-sample" in card.text
    )  # both corpora, named
    tok_before = json.loads((base / "best" / "tokenizer_config.json").read_text())
    tok_after = json.loads((out / "best" / "tokenizer_config.json").read_text())
    for key in (
        "time_resolution_ms",
        "max_time_shift",
        "num_velocity_bins",
        "sustain_pedal",
        "added_tokens_decoder",
    ):
        assert tok_after[key] == tok_before[key]
    assert tok_after["auto_map"] == tok_before["auto_map"]
    before = json.loads((base / "best" / "config.json").read_text())
    after = json.loads((out / "best" / "config.json").read_text())
    for key in ("vocab_size", "n_embd", "n_layer", "n_head", "n_positions", "model_type", "auto_map"):
        assert before[key] == after[key]


@pytest.mark.slow
def test_token_pack_run_fits_its_wall_time_budget(tmp_path):
    from hf_music import MidiTokenizer
    from hf_music.token_pack import load_corpus

    pack = load_corpus(MidiTokenizer(), maestro=MAESTRO_MINI).save(tmp_path / "mini.tokens.npz")
    out = tmp_path / "budget"
    train(
        out, "--tokens_file", pack, "--max_minutes", 0.6, "--warmup_steps", 40, "--num_evaluations", 2,
        "--batch_size", 4, "--augment",
    )  # fmt: skip
    record = RunRecord.load(out)
    steps = record.training.max_steps
    # The evaluations are in the budget: each scores the batches that fit 10% of it (at least one),
    # a count fixed before step 0 and kept in the record (step 0 once scored every block: 6.5 min).
    cap = record.training.args["max_eval_batches"]
    validation_batches = record.validation.tokens // 256 // 4  # an upper bound on the blocks' batches
    assert isinstance(cap, int) and 1 <= cap <= validation_batches
    (scored,) = {point.tokens for point in record.training.history}  # the same blocks every time
    assert (cap - 1) * 4 * 255 < scored <= cap * 4 * 255
    # The step count was fitted to the budget after the timed steps 10-40, then kept in the record.
    assert steps > 40 and record.training.completed_steps == steps
    # --num_evaluations 2: every half of the fitted run, and at its end. The interval is known only
    # once the run is fitted at step 40, so a multiple of it before step 40 has no evaluation.
    half = steps // 2
    fitted = {step for step in range(CALIBRATION_STEPS[1], steps + 1) if step % half == 0}
    assert [point.step for point in record.training.history] == sorted({0, *fitted, steps})
    assert record.training_data == [
        Corpus(kind="maestro", name="maestro-mini (MAESTRO v3.0.0 layout)", source="maestro-mini",
               license="cc-by-nc-sa-4.0")
    ]  # fmt: skip
    assert (record.train.pieces, record.validation.pieces) == (35, 8)
    assert RunRecord.load(out / "best").training.max_steps == steps


@pytest.mark.slow
def test_the_embedded_model_is_a_checkpoint_train_py_fine_tunes(tmp_path):
    from hf_music.resources import DEFAULT_MODEL_DIR

    record = train(
        tmp_path / "from_default", "--init_from", DEFAULT_MODEL_DIR, "--midi_dir", POP909, "--max_steps", 2,
        "--eval_steps", 2, "--batch_size", 2, "--max_eval_batches", 2,
    )  # fmt: skip
    assert [point.step for point in record.training.history] == [0, 2]
    # The base model's data come first, so the MAESTRO licence carries over.
    assert [corpus.name for corpus in record.training_data] == ["MAESTRO v3.0.0", "pop909-sample"]


@pytest.mark.slow
def test_bpe_run_learns_merges_and_its_checkpoint_evaluates_and_generates(tmp_path):
    from hf_music import MidiTokenizer, generate_ids, load_model
    from hf_music.evaluate import main as evaluate
    from hf_music.token_pack import load_corpus

    pack = load_corpus(MidiTokenizer(), maestro=MAESTRO_MINI).save(tmp_path / "mini.tokens.npz")
    out = tmp_path / "bpe"
    record = train(
        out, "--tokens_file", pack, "--bpe_vocab_size", 600, "--max_steps", 4, "--eval_steps", 4,
        "--batch_size", 2, "--max_eval_batches", 2,
    )  # fmt: skip
    assert (record.model.vocab_size, record.model.bpe_merges) == (600, 209)
    model, tokenizer = load_model(str(out / "best"))
    assert len(tokenizer.bpe_merges) == 209 and model.config.vocab_size == 600
    # evaluate.py merges the pack of events with the checkpoint's own merges: fewer tokens, same music.
    base_test, bpe_test = (
        evaluate([*model_arg, "--tokens_file", str(pack), "--split", "test"])[0]
        for model_arg in ([], ["--model", str(out / "best")])  # the embedded model: performance events
    )
    assert bpe_test.tokens < 0.9 * base_test.tokens
    assert bpe_test.model.nats_per_second > 0 and bpe_test.model.nats_per_token > 0
    (row,) = generate_ids(model, tokenizer, max_seconds=5.0, max_new_tokens=2000, seed=0)
    notes = tokenizer.ids_to_notes(row)
    assert any(i >= tokenizer.base_vocab_size for i in row) and 5.0 <= notes.offset.max() < 7.0


@pytest.mark.slow
def test_bpe_vocab_size_refuses_what_merged_tokens_cannot_do(tmp_path):
    for extra in (["--augment"], ["--init_from", "x"]):
        bad = subprocess.run(
            [sys.executable, str(TRAIN), "--maestro_dir", str(MAESTRO_MINI), "--bpe_vocab_size", "600", *extra],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert bad.returncode == 2 and "bpe" in bad.stderr.lower(), bad.stderr


@pytest.mark.slow
def test_config_file_and_argument_errors(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(f"maestro_dir: {MAESTRO_MINI}\nmax_steps: 2\neval_steps: 2\nbatch_size: 4\n")
    record = train(tmp_path / "from_yaml", "--config", config)
    assert [point.step for point in record.training.history] == [0, 2]
    bad = subprocess.run(
        [sys.executable, str(TRAIN), "--output_dir", str(tmp_path / "x")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode != 0 and "exactly one of --maestro_dir" in bad.stderr


@pytest.mark.parametrize("name", ["single_gpu", "multi_gpu", "fsdp2", "deepspeed_zero2"])
def test_ready_made_accelerate_configs_parse(name):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(REPO / "scripts" / "accelerate" / f"{name}.yaml"))
    assert config.mixed_precision == "bf16"
    assert config.num_processes == (1 if name == "single_gpu" else 8)
    assert (
        config.distributed_type.value
        == {
            "single_gpu": "NO",
            "multi_gpu": "MULTI_GPU",
            "fsdp2": "FSDP",
            "deepspeed_zero2": "DEEPSPEED",
        }[name]
    )


@pytest.mark.slow
def test_gpu_recipe_sh_trains_the_default_models_recipe(tmp_path):
    """scripts/gpu_recipe.sh, shrunk for a CPU (its rehearsal variables): the training stage is the
    packaged recipe with the script's pack, budget and overrides, and every stage leaves its file."""
    from hf_music import MidiTokenizer
    from hf_music.token_pack import load_corpus
    from hf_music.training_config import config_path

    pack = load_corpus(MidiTokenizer(), maestro=MAESTRO_MINI).save(tmp_path / "mini.tokens.npz")
    env = {
        **os.environ, "OMP_NUM_THREADS": "1", "PACK": str(pack), "RUN": str(tmp_path / "run"),
        "MODEL": "n_embd=32,n_layer=1,n_head=2", "BLOCK": "128", "BATCH": "4", "PRECISION": "no", "COMPILE": "",
        "SWEEP_SECONDS": "1",  # the sweep stage times out at once: a failed stage does not stop the next
    }  # fmt: skip
    result = subprocess.run(
        ["bash", "scripts/gpu_recipe.sh", str(tmp_path / "out"), "0.3"],
        capture_output=True, text=True, timeout=600, cwd=REPO, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "training failed" not in result.stdout and "evaluation failed" not in result.stdout
    ran = TrainingConfig.load(tmp_path / "run" / CONFIG_FILE)
    expected = TrainingConfig.load(config_path("default_model")).to_dict()
    expected.update(
        tokens_file=str(pack), max_minutes=0.3, output_dir=str(tmp_path / "run"), mixed_precision="no",
        config_overrides="n_embd=32,n_layer=1,n_head=2", block_size=128, batch_size=4, compile=False,
    )  # fmt: skip
    assert ran.to_dict() == expected
    assert {"run_record.json", "evaluation.json", "best.tgz"} <= {
        p.name for p in (tmp_path / "out").iterdir()
    }


def test_validation_loss_is_the_evaluation_scripts_nll_on_the_same_blocks():
    """train.evaluate and evaluation.score_blocks share one NLL computation: equal on equal blocks."""
    from accelerate import Accelerator
    from torch.utils.data import DataLoader, TensorDataset

    from hf_music import MusicTransformerConfig, MusicTransformerForCausalLM
    from hf_music.evaluation import ngram_log_probs, score_blocks
    from hf_music.train import evaluate

    torch.manual_seed(0)
    model = MusicTransformerForCausalLM(MusicTransformerConfig.from_preset("tiny", n_positions=64))
    blocks = torch.randint(3, 391, (6, 64))
    accelerator = Accelerator(cpu=True)
    loader = accelerator.prepare(DataLoader(TensorDataset(blocks), batch_size=4))
    metrics = evaluate(model, loader, accelerator)
    assert model.training  # evaluate hands the model back in training mode
    rows, count = score_blocks(model, blocks, *ngram_log_probs(blocks.tolist(), 391), batch_size=4)
    assert metrics["val_tokens"] == count == 6 * 63
    assert math.isclose(metrics["val_loss"], rows[0]["nll"], rel_tol=1e-6)
