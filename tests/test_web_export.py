"""hf-music export-web: the exported step in onnxruntime (Python), and the page composing in Chromium.

The page's JavaScript runtime (onnxruntime-web, pinned in space/browser/package.json) is installed by
npm into space/browser/node_modules (git-ignored) on the first run; later runs reuse it.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import symusic
import torch

from hf_music import MidiTokenizer
from hf_music.commands.export_web import ORT_DIST, ORT_FILES, PAGE_DIR, export_web
from hf_music.music_transformer.grammar import grammar_violations
from hf_music.resources import DEFAULT_MODEL_DIR, load_model

CHROMIUM = "/usr/bin/chromium"
SCARLATTI = Path(__file__).parent / "fixtures" / "scarlatti_sonata_k525.rmi"
PIANO = (21, 108)


def npm_install_onnxruntime_web() -> None:
    """onnxruntime-web into space/browser/node_modules (git-ignored), once."""
    for program in ("node", "npm"):
        if shutil.which(program) is None:
            pytest.fail(f"{program} not found: the page's test needs Node.js and npm (apt-get install npm)")
    if not all((ORT_DIST / name).is_file() for name in ORT_FILES):
        result = subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--no-package-lock"],
            cwd=PAGE_DIR, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert result.returncode == 0, f"npm install in {PAGE_DIR} failed: {result.stderr[-2000:]}"


@pytest.fixture(scope="module")
def web_dir(tmp_path_factory) -> Path:
    """The embedded model's page, as `hf-music export-web --out DIR` writes it."""
    npm_install_onnxruntime_web()
    out = export_web(None, tmp_path_factory.mktemp("web"))
    written = sorted(path.name for path in out.iterdir())
    assert written == ["index.html", "model.onnx", "music.js", "ort", "vocab.json"]
    return out


@pytest.mark.slow
def test_onnx_step_with_its_cache_gives_the_models_logits_on_a_real_prompt(web_dir):
    import onnxruntime

    model, tokenizer = load_model(None)
    ids = tokenizer.encode_midi(SCARLATTI)[:160]
    with torch.no_grad():
        expected = model(torch.tensor([ids])).logits[0].numpy()
    session = onnxruntime.InferenceSession(str(web_dir / "model.onnx"))
    vocab = json.loads((web_dir / "vocab.json").read_text())
    past = np.zeros(vocab["past_shape"], np.float32)  # the page's empty cache: no position yet
    # A prefill of 100 events, then one event per step on the (growing) cache the graph returns.
    logits, past = session.run(None, {"input_ids": np.array([ids[:100]]), "past": past})
    got = [logits[0]]
    for position in range(100, len(ids)):
        assert past.shape[4] == position
        logits, past = session.run(None, {"input_ids": np.array([[ids[position]]]), "past": past})
        got.append(logits[0])
    got = np.concatenate(got)
    print(f"\nonnxruntime (Python): {steps_per_second(session, past.shape):.0f} steps/s at positions 0-500")
    # To 1e-4 of the logits' scale (~28 here): fp32 itself is no closer (HF fp32 against the same model
    # in float64: 3.5e-4 at most; onnxruntime against HF: 6.5e-4).
    assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max()
    assert (got.argmax(axis=1) == expected.argmax(axis=1)).all()


def steps_per_second(session, cache_shape, steps: int = 500) -> float:
    """Single steps from an empty cache, each fed the cache the last returned (the page's loop)."""
    past = np.zeros((*cache_shape[:4], 0, cache_shape[5]), np.float32)
    started = time.perf_counter()
    for _ in range(steps):
        _, past = session.run(None, {"input_ids": np.array([[1]]), "past": past})
    return steps / (time.perf_counter() - started)


# In the page: session.run alone, single steps from an empty cache (a figure for the test log).
SESSION_RUN_STEPS_PER_SECOND = """async (steps) => {
  const { loadModel } = await import("./music.js");
  const { session, vocab } = await loadModel();
  const ort = await import("./ort/ort.wasm.min.mjs");
  let past = new ort.Tensor("float32", new Float32Array(0), vocab.past_shape);
  const started = performance.now();
  for (let i = 0; i < steps; i++) {
    const out = await session.run({ input_ids: new ort.Tensor("int64", BigInt64Array.of(1n), [1, 1]), past });
    past = out.present;
  }
  return steps / ((performance.now() - started) / 1000);
}"""


# music.js's generate with an event cap: the ids it returns.
CAPPED_PIECE = """async (maxEvents) => {
  const music = await import("./music.js");
  const model = await music.loadModel();
  return music.generate(model, { seconds: 60, temperature: 1, seed: 2, maxEvents });
}"""


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # no line per request in the test log
        pass


def serve(folder: Path) -> http.server.ThreadingHTTPServer:
    handler = functools.partial(QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def sorted_notes(notes: dict) -> list[tuple]:
    fields = ("time", "duration", "pitch", "velocity")
    return sorted(zip(*(np.round(notes[name], 6).tolist() for name in fields), strict=True))


@contextlib.contextmanager
def opened_page(web_dir: Path):
    """Chromium on the page served from web_dir, ready to compose: yields (page, the page's errors)."""
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).is_file(), f"{CHROMIUM} missing: run bash scripts/install_system_packages.sh"
    server = serve(web_dir)
    errors = []
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page()
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(f"http://127.0.0.1:{server.server_address[1]}/")
            page.wait_for_function("!document.getElementById('generate').disabled", timeout=60_000)
            yield page, errors
            browser.close()
    finally:
        server.shutdown()


def compose(page, seconds: int, seed: int, path: Path) -> bytes:
    """Click Generate on the page and return the MIDI file it offers for download."""
    page.fill("#seconds", str(seconds))
    page.fill("#seed", str(seed))
    page.click("#generate")
    offered = "!document.getElementById('download').hidden"
    failed = "document.getElementById('progress').textContent.startsWith('Could not')"
    page.wait_for_function(f"{offered} || {failed}", timeout=540_000)
    assert page.is_visible("#download"), page.text_content("#progress")
    with page.expect_download() as download:
        page.click("#download")
    download.value.save_as(path)
    return path.read_bytes()


@pytest.mark.slow
def test_page_composes_20_seconds_in_chromium_and_downloads_a_midi_file(web_dir, tmp_path):
    with opened_page(web_dir) as (page, errors):
        started = time.perf_counter()
        compose(page, seconds=20, seed=7, path=tmp_path / "piece.mid")
        elapsed = time.perf_counter() - started
        stats = page.evaluate("({...document.body.dataset})")
        progress = page.text_content("#progress")
        ids = page.evaluate("window.lastEvents")
        # The seeded sampler: a seed gives the same piece again, another seed another piece.
        pieces = [compose(page, 2, seed, tmp_path / f"short_{i}.mid") for i, seed in enumerate((3, 3, 4))]
        run_speed = page.evaluate(SESSION_RUN_STEPS_PER_SECOND, 500)
    print(
        f"\nChromium page: 20 s of music, {stats['events']} events in {elapsed:.1f} s "
        f"({float(stats['tokensPerSecond']):.1f} events/s); session.run alone {run_speed:.1f} steps/s "
        "at positions 0-500"
    )
    assert not errors
    # The clock passes 20 s with the last TIME_SHIFT (at most 1 s).
    assert re.fullmatch(r"Done: 20\.\d s of music, \d+ events in [\d.]+ s \([\d.]+ events/s\)\.", progress), (
        progress
    )
    assert pieces[0] == pieces[1] != pieces[2]
    score = symusic.Score(tmp_path / "piece.mid", ttype="second")
    notes = score.tracks[0].notes.numpy()
    assert len(notes["pitch"]) > 20
    assert abs(score.end() - 20.0) <= 2.0
    assert PIANO[0] <= notes["pitch"].min() and notes["pitch"].max() <= PIANO[1]
    assert notes["duration"].max() <= 8.0 + 1e-6  # the grammar's caps: a note's length, held notes
    times = np.concatenate((notes["time"], notes["time"] + notes["duration"]))
    change = np.r_[np.ones(len(notes["time"])), -np.ones(len(notes["time"]))]
    assert np.cumsum(change[np.lexsort((change, times))]).max() <= 16  # releases first at one time
    # The page's events keep the grammar, and its MIDI writer gives MidiTokenizer's notes for them.
    tokenizer = MidiTokenizer.from_pretrained(DEFAULT_MODEL_DIR)
    assert grammar_violations(ids, tokenizer) == 0
    expected = tokenizer.decode_midi(ids).to("second").tracks[0].notes.numpy()
    assert sorted_notes(notes) == sorted_notes(expected)


@pytest.mark.slow
def test_page_composes_past_the_models_context_by_repriming_and_caps_its_events(tmp_path):
    from hf_music import MusicTransformerConfig, MusicTransformerForCausalLM

    torch.manual_seed(0)  # a 16-event context: 8 s of music take several windows
    config = MusicTransformerConfig.from_preset("tiny", n_positions=16, initializer_range=0.2)
    MusicTransformerForCausalLM(config).save_pretrained(tmp_path / "short")
    MidiTokenizer.from_pretrained(DEFAULT_MODEL_DIR).save_pretrained(tmp_path / "short")
    npm_install_onnxruntime_web()
    with opened_page(export_web(str(tmp_path / "short"), tmp_path / "web")) as (page, errors):
        compose(page, seconds=8, seed=1, path=tmp_path / "piece.mid")
        progress = page.text_content("#progress")
        ids = page.evaluate("window.lastEvents")
        capped = page.evaluate(CAPPED_PIECE, 40)  # 60 s asked, 40 events allowed
    assert not errors
    assert len(capped) == 1 + 40  # <bos> and the events
    assert re.fullmatch(r"Done: 8\.\d s of music, \d+ events in .*", progress), progress
    assert len(ids) > 3 * 16
    assert grammar_violations(ids, MidiTokenizer.from_pretrained(DEFAULT_MODEL_DIR)) == 0


@pytest.mark.slow
def test_a_vocabulary_with_bpe_merges_is_refused_in_one_line(tmp_path, maestro_files):
    from hf_music.cli import main

    model, tokenizer = load_model(None)
    bpe = tokenizer.train_bpe([tokenizer.encode_midi(f) for f in maestro_files[:4]], tokenizer.vocab_size + 8)
    model.resize_token_embeddings(bpe.vocab_size)
    model.save_pretrained(tmp_path / "bpe")
    bpe.save_pretrained(tmp_path / "bpe")
    with pytest.raises(SystemExit) as exit_status:
        main(["export-web", "--model", str(tmp_path / "bpe"), "--out", str(tmp_path / "web")])
    assert exit_status.value.code == (
        f"hf-music export-web: error: {tmp_path / 'bpe'}: the page samples events, and this vocabulary has BPE merges"
    )
