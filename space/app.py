"""hf_music Space: compose piano music with a Music Transformer, hear it, see it, download it.

The model comes from $HF_MUSIC_MODEL (a Hub id or a folder), else the checkpoint embedded
in hf_music; it is loaded once. Run locally with `python space/app.py`.
"""

from __future__ import annotations

import functools
import os
import random
import tempfile
import threading
import time
from pathlib import Path

import gradio as gr

from hf_music import bundled_prompts, generate_ids, load_model
from hf_music.audio import AudioUnavailableError, piano_roll_figure, render_audio
from hf_music.generation import prompt_to_ids

MODEL_ID = os.environ.get("HF_MUSIC_MODEL") or None
# The temperatures the README's degeneration table supports for the embedded model: at 1.0-1.5
# at most 1 of 12 samples of 20 s left the range of real MAESTRO excerpts (they do 5% of the
# time themselves); at 0.9 2 of 12 did, at 0.5 11 of 12 (one key hammered, too few notes).
TEMPERATURE_RANGE = (1.0, 1.5)
SAMPLE_RATE = 22050
MAX_UPLOAD_BYTES = 1_000_000  # a long solo piano performance is ~100 kB
MAX_SECONDS = 60  # of new music per click
MAX_NEW_TOKENS = 4096  # hard cap whatever the density (dense piano is ~40 events per second)
MAX_CONTEXT_TOKENS = 16_384  # "continue the last result" keeps growing the piece up to this
NO_PROMPT = "(none: start from silence)"
PROMPTS = bundled_prompts()
OUTPUT_DIR = Path(tempfile.mkdtemp(prefix="hf_music_space_"))


@functools.cache
def model_and_tokenizer():
    return load_model(MODEL_ID)


class PromptError(ValueError):
    """A prompt the app refuses, with a message for the user."""


def read_upload(path: str | None) -> bytes | None:
    """The uploaded MIDI bytes, size-checked (the tokenizer checks the rest)."""
    if not path:
        return None
    size = os.path.getsize(path)
    if size > MAX_UPLOAD_BYTES:
        raise PromptError(
            f"{Path(path).name} is {size / 1e6:.1f} MB; the limit is {MAX_UPLOAD_BYTES / 1e6:.0f} MB"
        )
    return Path(path).read_bytes()


def choose_prompt(tokenizer, upload_path, bundled, prompt_seconds, continue_last, last_ids):
    """Token ids to continue and a label, from (in this order) the last result, an upload, a bundled piece."""
    if continue_last and last_ids:
        return list(last_ids)[-MAX_CONTEXT_TOKENS:], "the last result"
    data = read_upload(upload_path)
    if data is not None:
        source, label = data, Path(upload_path).name
    elif bundled and bundled != NO_PROMPT:
        source, label = PROMPTS[bundled], bundled
    else:
        return None, "silence"
    try:
        ids = prompt_to_ids(source, tokenizer, prompt_seconds, name=label)
    except ValueError as error:  # MidiReadError ("<name>: <problem>"), also from a checkpoint's own code copy
        raise PromptError(str(error)) from error
    notes = tokenizer.ids_to_notes(ids)
    if len(notes) == 0:
        raise PromptError(f"{label}: the file has no notes to continue")
    return ids, f"{label} ({len(notes)} notes)"


# One generation at a time: the seeded sampler forks torch's global RNG, and this CPU has few cores.
generate_lock = threading.Lock()


def compose(
    temperature: float,
    top_k: float,
    top_p: float,
    seconds: float,
    seed: float,
    random_seed: bool,
    bundled: str,
    upload: str | None,
    prompt_seconds: float,
    continue_last: bool,
    last_ids: list[int] | None = None,
):
    """Generate `seconds` of music; returns audio, piano roll, MIDI file, facts, ids, seed used."""
    started = time.perf_counter()
    try:
        model, tokenizer = model_and_tokenizer()
    except (OSError, ValueError) as error:  # a wrong HF_MUSIC_MODEL, no network, no embedded model
        raise gr.Error(f"cannot load the model {MODEL_ID or '(embedded)'}: {error}", title="Model") from error
    try:
        prompt, prompt_label = choose_prompt(
            tokenizer, upload, bundled, prompt_seconds or None, continue_last, last_ids
        )
    except PromptError as error:
        raise gr.Error(str(error), title="Cannot use this MIDI file") from error
    seed = random.randrange(2**31) if random_seed or seed is None else int(seed)
    seconds = float(min(max(seconds, 1), MAX_SECONDS))
    with generate_lock:
        ids = generate_ids(
            model,
            tokenizer,
            prompt=prompt,
            max_new_tokens=MAX_NEW_TOKENS,
            max_seconds=seconds,
            temperature=float(temperature),
            top_k=int(top_k) or None,
            top_p=float(top_p),
            seed=seed,
        )[0]
    generated_at = time.perf_counter()
    score = tokenizer.decode_midi(ids)
    prompt_end = tokenizer.ids_to_notes(prompt).offset.max(initial=0) if prompt else None
    midi_path = Path(tempfile.mkdtemp(dir=OUTPUT_DIR)) / f"hf_music_seed{seed}.mid"  # a folder per request
    score.dump_midi(str(midi_path))
    try:
        audio = (SAMPLE_RATE, render_audio(score, SAMPLE_RATE))
        audio_note = ""
    except AudioUnavailableError as error:
        audio, audio_note = None, f" Audio unavailable: {error}."
        gr.Warning(str(error))
    figure = piano_roll_figure(score, prompt_seconds=prompt_end)
    new_tokens = len(ids) - (len(prompt) if prompt else 1)
    facts = (
        f"**{score.note_num()} notes, {score.to('second').end():.1f} s, {new_tokens} new tokens** "
        f"continuing {prompt_label}; generated in {generated_at - started:.1f} s, ready in "
        f"{time.perf_counter() - started:.1f} s (seed {seed}, temperature {temperature:g}).{audio_note}"
    )
    return audio, figure, str(midi_path), facts, ids, seed


def build_demo() -> gr.Blocks:
    with gr.Blocks(title="Music Transformer (hf_music)") as demo:
        gr.Markdown(
            "# Music Transformer\nPiano music from a GPT-2-style model over performance events "
            "(note-on, note-off, time-shift, velocity). Move the **temperature**: 1.0 plays closest to "
            f"the performances it learned from, higher is more adventurous. Model: `{MODEL_ID or 'embedded hf_music default'}`."
        )
        last_ids = gr.State(None)
        with gr.Row():
            with gr.Column(scale=1):
                temperature = gr.Slider(
                    *TEMPERATURE_RANGE, value=TEMPERATURE_RANGE[0], step=0.1, label="Temperature",
                    elem_id="temperature",
                )  # fmt: skip
                seconds = gr.Slider(
                    5, MAX_SECONDS, value=20, step=1, label="Seconds of new music", elem_id="seconds"
                )
                with gr.Accordion("Sampling", open=False):
                    # Truncation made this model repeat itself (README: top-p 0.95 3/12, min-p 0.05
                    # 7/12 samples out of range, against 1/12 without): off by default.
                    top_k = gr.Slider(0, 100, value=0, step=1, label="Top-k (0 = off)")
                    top_p = gr.Slider(0.05, 1.0, value=1.0, step=0.05, label="Top-p (1 = off)")
                    with gr.Row():
                        seed = gr.Number(value=0, precision=0, label="Seed")
                        random_seed = gr.Checkbox(value=True, label="Random seed")
                with gr.Accordion("Prompt", open=True):
                    bundled = gr.Dropdown(
                        [NO_PROMPT, *PROMPTS], value=NO_PROMPT, label="Continue a bundled MAESTRO piece"
                    )
                    upload = gr.File(
                        label="...or upload a MIDI file", file_types=[".mid", ".midi"], type="filepath",
                        elem_id="upload",
                    )  # fmt: skip
                    prompt_seconds = gr.Slider(
                        0, 60, value=10, step=1, label="Prompt seconds to keep (0 = all)"
                    )
                    continue_last = gr.Checkbox(value=False, label="Continue the last result")
                generate = gr.Button("Generate", variant="primary", elem_id="generate")
            with gr.Column(scale=2):
                facts = gr.Markdown(elem_id="facts")
                audio = gr.Audio(label="Listen", type="numpy", elem_id="audio", interactive=False)
                roll = gr.Plot(label="Piano roll", elem_id="piano-roll")
                midi = gr.File(label="MIDI file", elem_id="midi", interactive=False)
        generate.click(
            compose,
            inputs=[
                temperature,
                top_k,
                top_p,
                seconds,
                seed,
                random_seed,
                bundled,
                upload,
                prompt_seconds,
                continue_last,
                last_ids,
            ],
            outputs=[audio, roll, midi, facts, last_ids, seed],
            api_name="compose",
            concurrency_limit=1,
        )
    return demo.queue(max_size=32)


demo = build_demo()


def launch(**kwargs):
    """demo.launch with the app's limits (upload size, the folder of generated files)."""
    return demo.launch(max_file_size=MAX_UPLOAD_BYTES, allowed_paths=[str(OUTPUT_DIR)], **kwargs)


if __name__ == "__main__":
    launch(server_name=os.environ.get("GRADIO_SERVER_NAME", "0.0.0.0"))
