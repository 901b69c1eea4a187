"""Publishing: the model card, the repo folder, and uploads to a local stand-in for the Hub.

There is no network here: uploads go to tests/fake_hub.py, an HTTP server that answers the
Hub's endpoints and records what it receives (HF_ENDPOINT points at it in a fresh process,
since huggingface_hub reads it at import time).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO_ROOT, run_without_hf_music
from fake_hub import FakeHub
from huggingface_hub import ModelCard

from hf_music.hub import HubError, assemble_repo, card_license, check_repo_id, render_model_card
from hf_music.resources import DEFAULT_MODEL_DIR
from hf_music.run_record import Corpus, RunRecord

CARD_TAGS = {"music", "midi", "symbolic-music", "music-generation", "music-transformer"}


def run_script(script: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / script), *args],
        capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=300,
    )  # fmt: skip


@pytest.fixture(scope="module")
def run_record() -> RunRecord:
    return RunRecord.load(DEFAULT_MODEL_DIR)


@pytest.fixture(scope="module")
def dry_run_folder(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dry") / "repo"
    result = run_script(
        "push_to_hub.py", "--checkpoint", str(DEFAULT_MODEL_DIR), "--repo_id", "someone/music-transformer",
        "--samples", str(REPO_ROOT / "hf_music" / "assets" / "prompts" / "scarlatti_sonata_k525.mid"),
        "--dry_run", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return out


@pytest.mark.slow
def test_card_metadata_and_model_index_equal_the_run_record(dry_run_folder, run_record):
    card = ModelCard.load(dry_run_folder / "README.md")
    data = card.data
    assert data.license == "cc-by-nc-sa-4.0"  # trained on MAESTRO
    assert data.library_name == "transformers" and data.pipeline_tag == "text-generation"
    assert set(data.tags) >= CARD_TAGS
    assert data.datasets is None  # no Hub dataset holds MAESTRO: the data is named in prose and model-index
    # One entry per measured split, named exactly, with the record's figures.
    results = {(r.dataset_name, r.metric_type): r.metric_value for r in data.eval_results}
    expected_results = {}
    for evaluation in run_record.evaluations:
        name = f"MAESTRO v3.0.0 ({evaluation.split} split)"
        expected_results[(name, "loss")] = round(evaluation.model.nats_per_token, 4)
        expected_results[(name, "perplexity")] = round(math.exp(evaluation.model.nats_per_token), 2)
    assert results == expected_results and len(results) == 4
    assert {r.dataset_split for r in data.eval_results} == {"validation", "test"}
    training = run_record.training
    # The text carries the run's real arguments and figures, and the usage sections.
    for expected in (
        f"{run_record.model.parameters:,}",
        f"| block_size | {training.args['block_size']} |",
        f"| steps done | {training.completed_steps} of {training.max_steps} ",
        f"{training.best_validation_nats_per_token:.4f} nats/token",
        f"| processes / device | 1 / {training.device} |",
        'from_pretrained("someone/music-transformer", trust_remote_code=True)',
        'AutoTokenizer.from_pretrained("someone/music-transformer", trust_remote_code=False)',
        'pipeline("text-generation", model=model, tokenizer=tokenizer)',
        'custom_generate="someone/music-transformer", trust_remote_code=True',
        "## Limitations",
        "Music Transformer: Generating Music with Long-Term Structure",
        "This Time with Feeling",
        "Enabling Factorized Piano Music Modeling",
    ):
        assert expected in card.text, expected


@pytest.mark.slow
def test_dry_run_folder_has_every_file_and_loads_without_hf_music(dry_run_folder, tmp_path, tokenizer):
    names = {p.relative_to(dry_run_folder).as_posix() for p in dry_run_folder.rglob("*") if p.is_file()}
    assert {
        "README.md", "config.json", "generation_config.json", "model.safetensors", "tokenizer_config.json",
        "run_record.json", "configuration_music_transformer.py", "modeling_music_transformer.py",
        "tokenization_music_transformer.py", "samples/scarlatti_sonata_k525.mid", "tokenizer.json",
        "custom_generate/generate.py", "custom_generate/requirements.txt",
    } <= names  # fmt: skip
    assert not any(name.endswith((".bin", ".pt", ".pth")) for name in names)  # safetensors only
    copy = shutil.copytree(dry_run_folder, tmp_path / "anywhere")
    stdout = run_without_hf_music(copy, tmp_path / "out.mid")
    assert stdout.split()[1:3] == ["MusicTransformerForCausalLM", "MidiTokenizer"]
    assert len(tokenizer.ids_to_notes(tokenizer.encode_midi(tmp_path / "out.mid"))) > 0


@pytest.mark.slow
def test_upload_is_one_commit_with_every_file_to_a_local_stand_in_for_the_hub(dry_run_folder, tmp_path):
    with FakeHub() as hub:
        result = run_script(
            "push_to_hub.py", "--checkpoint", str(DEFAULT_MODEL_DIR), "--repo_id", "someone/music-transformer",
            "--samples", str(REPO_ROOT / "hf_music" / "assets" / "prompts" / "scarlatti_sonata_k525.mid"),
            "--commit_message", "first upload",
            env={"HF_ENDPOINT": hub.url, "HF_TOKEN": "hf_test_token", "HF_HOME": str(tmp_path)},
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    creates = [r for r in hub.requests if r["path"] == "/api/repos/create"]
    assert len(creates) == 1 and json.loads(creates[0]["body"])["name"] == "music-transformer"
    assert creates[0]["headers"]["authorization"] == "Bearer hf_test_token"
    assert len(hub.commits) == 1
    commit = hub.commits[0]
    assert (commit["repo"], commit["revision"], commit["summary"]) == (
        "someone/music-transformer",
        "main",
        "first upload",
    )
    local = {
        p.relative_to(dry_run_folder).as_posix(): p.read_bytes()
        for p in dry_run_folder.rglob("*")
        if p.is_file()
    }
    assert commit["files"] == local  # every file of the dry-run folder, byte for byte
    assert "pushed to" in result.stdout


@pytest.mark.slow
def test_private_upload_to_a_branch_of_a_local_stand_in_for_the_hub(tmp_path):
    with FakeHub() as hub:
        result = run_script(
            "push_to_hub.py", "--checkpoint", str(DEFAULT_MODEL_DIR), "--repo_id", "someone/music-transformer",
            "--private", "--revision", "experiment",
            env={"HF_ENDPOINT": hub.url, "HF_TOKEN": "hf_test_token", "HF_HOME": str(tmp_path)},
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    create = json.loads(next(r for r in hub.requests if r["path"] == "/api/repos/create")["body"])
    assert create["visibility"] == "private"
    assert hub.branches == ["experiment"]
    assert [c["revision"] for c in hub.commits] == ["experiment"]


@pytest.mark.slow
def test_clear_errors_for_token_checkpoint_and_repo_id(tmp_path):
    no_token = {"HF_TOKEN": "", "HF_HOME": str(tmp_path / "empty_home")}
    result = run_script(
        "push_to_hub.py", "--checkpoint", str(DEFAULT_MODEL_DIR), "--repo_id", "a/b", env=no_token
    )
    assert result.returncode == 2 and "no Hugging Face token" in result.stderr
    result = run_script(
        "push_to_hub.py", "--checkpoint", str(tmp_path), "--repo_id", "a/b", "--dry_run", str(tmp_path / "o")
    )
    assert result.returncode == 2 and f"{tmp_path} is not a checkpoint folder" in result.stderr
    result = run_script("push_to_hub.py", "--checkpoint", str(DEFAULT_MODEL_DIR), "--repo_id", "just-a-name")
    assert result.returncode == 2 and "must be 'namespace/name'" in result.stderr
    with pytest.raises(HubError, match="namespace/name"):
        check_repo_id("a/b/c")


def test_licence_follows_maestro_and_fine_tunes_name_their_base(tmp_path):
    maestro = [Corpus("maestro", "MAESTRO v3.0.0", None, "cc-by-nc-sa-4.0")]
    pop = Corpus("midi_folder", "pop909-sample", None, None)
    assert card_license(maestro) == "cc-by-nc-sa-4.0"
    assert card_license([*maestro, pop]) == "cc-by-nc-sa-4.0"
    with pytest.raises(HubError, match=r"requires cc-by-nc-sa-4\.0"):
        card_license(maestro, "mit")
    assert card_license([pop], "mit") == "mit"
    assert card_license([pop]) == "unknown"  # nobody said: the card says so
    assert card_license([Corpus("midi_folder", "mine", None, "cc-by-4.0")]) == "cc-by-4.0"
    # A fine-tune of a Hub model: base_model in the metadata, both corpora in the card.
    folder = shutil.copytree(DEFAULT_MODEL_DIR, tmp_path / "fine_tuned")
    record = RunRecord.load(folder)
    dataclasses.replace(
        record, base_model="someone/music-transformer", training_data=[*maestro, pop], evaluations=[]
    ).save(folder)
    card = render_model_card(folder, "someone/pop-transformer")
    assert card.data.base_model == "someone/music-transformer"
    assert card.data.datasets is None and "- MAESTRO v3.0.0" in card.text and "- pop909-sample" in card.text
    assert card.data.license == "cc-by-nc-sa-4.0"
    assert "Fine-tuned from [someone/music-transformer]" in card.text


def test_assemble_refuses_to_overwrite_its_checkpoint():
    with pytest.raises(HubError, match="must differ"):
        assemble_repo(DEFAULT_MODEL_DIR, DEFAULT_MODEL_DIR, "a/b")


@pytest.mark.slow
def test_deploy_space_uploads_app_and_package_to_a_local_stand_in_for_the_hub(tmp_path):
    with FakeHub() as hub:
        result = run_script(
            "deploy_space.py", "--space_id", "someone/music-demo", "--model_id", "someone/music-transformer",
            env={"HF_ENDPOINT": hub.url, "HF_TOKEN": "hf_test_token", "HF_HOME": str(tmp_path)},
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    create = json.loads(next(r for r in hub.requests if r["path"] == "/api/repos/create")["body"])
    assert create["type"] == "space" and create["sdk"] == "gradio"
    variables = [r for r in hub.requests if r["path"].endswith("/variables")]
    assert json.loads(variables[0]["body"]) == {"key": "HF_MUSIC_MODEL", "value": "someone/music-transformer"}
    (commit,) = hub.commits
    assert commit["repo"] == "someone/music-demo"
    files = commit["files"]
    assert {"app.py", "README.md", "requirements.txt", "packages.txt", "hf_music/__init__.py"} <= set(files)
    assert "hf_music/assets/default_model/model.safetensors" in files
    assert not any("__pycache__" in name for name in files)
    assert b"- someone/music-transformer" in files["README.md"]  # the card's `models`


@pytest.mark.slow
def test_push_to_an_unreachable_endpoint_is_one_line_naming_it(tmp_path):
    env = {"HF_TOKEN": "hf_test_token", "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HOME": str(tmp_path)}
    result = run_script("push_to_hub.py", "--checkpoint", str(DEFAULT_MODEL_DIR), "--repo_id", "a/b", env=env)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]  # one line
    assert result.stderr.startswith("push_to_hub: http://127.0.0.1:9: ")


def test_the_package_code_is_published_never_the_checkpoint_folders(tmp_path):
    package = REPO_ROOT / "hf_music" / "music_transformer"
    folder = shutil.copytree(DEFAULT_MODEL_DIR, tmp_path / "tampered")
    planted = "\nimport os; os.system('echo planted')\n"
    for name in ("modeling_music_transformer.py", "custom_generate/generate.py"):
        with open(folder / name, "a") as handle:
            handle.write(planted)
    (folder / "custom_generate" / "requirements.txt").write_text("evil-package==6.6.6\n")
    out = assemble_repo(folder, tmp_path / "repo", "someone/music-transformer")
    for name in ("configuration_music_transformer.py", "modeling_music_transformer.py",
                 "tokenization_music_transformer.py"):  # fmt: skip
        assert (out / name).read_bytes() == (package / name).read_bytes(), name
    assert (out / "custom_generate" / "generate.py").read_bytes() == (package / "grammar.py").read_bytes()
    assert "evil-package" not in (out / "custom_generate" / "requirements.txt").read_text()
    assert not any(planted in p.read_text() for p in out.rglob("*.py"))


@pytest.mark.slow
def test_a_checkpoint_without_a_run_record_gets_a_card_of_what_is_known(tmp_path):
    from hf_music import MidiTokenizer, MusicTransformerForCausalLM

    folder = tmp_path / "plain"  # saved with plain transformers: no run_record.json
    MusicTransformerForCausalLM.from_pretrained(DEFAULT_MODEL_DIR).save_pretrained(folder)
    MidiTokenizer.from_pretrained(DEFAULT_MODEL_DIR).save_pretrained(folder)
    out = tmp_path / "repo"
    result = run_script(
        "push_to_hub.py", "--checkpoint", str(folder), "--repo_id", "a/plain", "--dry_run", str(out)
    )
    assert result.returncode == 0, result.stderr
    card = ModelCard.load(out / "README.md")
    record = RunRecord.load(DEFAULT_MODEL_DIR)
    assert f"| Parameters | {record.model.parameters:,} |" in card.text
    assert (
        f"| Layers / width / heads | {record.model.n_layer} / {record.model.n_embd} / {record.model.n_head} |"
        in card.text
    )
    assert "Not known: this checkpoint came without the run record" in card.text
    assert "## Training procedure" not in card.text and "Trained and published" not in card.text
    assert card.data.license == "unknown" and not card.data.eval_results
    assert not (out / "run_record.json").exists()


@pytest.mark.slow
def test_weights_that_do_not_fill_the_config_are_not_published(tmp_path):
    folder = shutil.copytree(DEFAULT_MODEL_DIR, tmp_path / "truncated")
    weights = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(weights[: len(weights) // 3])
    result = run_script(
        "push_to_hub.py", "--checkpoint", str(folder), "--repo_id", "a/b", "--dry_run", str(tmp_path / "o")
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"push_to_hub: {folder}/model.safetensors is not a readable safetensors file")


def test_a_staged_space_leaves_out_npm_packages_and_caches(tmp_path):
    from hf_music.hub import stage_space

    space = tmp_path / "space"
    (space / "browser" / "node_modules" / "onnxruntime-web").mkdir(parents=True)
    (space / "browser" / "node_modules" / "onnxruntime-web" / "ort.wasm").write_bytes(b"\0" * 64)
    (space / "browser" / "index.html").write_text("<html></html>")
    (space / "__pycache__").mkdir()
    (space / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"\0")
    (space / "app.py").write_text("print('app')\n")
    (space / "README.md").write_text("---\ntitle: demo\nsdk: gradio\n---\n# demo\n")
    out = stage_space(space, tmp_path / "staged", "someone/music-transformer")
    staged = {path.relative_to(out).as_posix() for path in out.rglob("*") if path.is_file()}
    assert {"app.py", "README.md", "browser/index.html", "hf_music/__init__.py"} <= staged
    assert not any("node_modules" in name or "__pycache__" in name for name in staged)
