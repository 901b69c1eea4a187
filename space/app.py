"""hf_music Space: compose piano music with a Music Transformer, hear and see it as it is written.

The model comes from $HF_MUSIC_MODEL (a Hub id or a folder), else the checkpoint embedded
in hf_music; it is loaded once. Run locally with `python space/app.py`.

A piece is written in chunks (`hf_music.streaming.stream_ids`): each chunk is one `generate_ids`
call that continues the ids so far with the request's own random state, so the streamed piece is
the piece one `generate_ids(..., seed=seed)` call gives. After each chunk the app decodes the ids
once and hands those notes to the audio renderer, the piano roll and the MIDI file.
"""

from __future__ import annotations

import atexit
import functools
import os
import random
import re
import shutil
import tempfile
import threading
import time
from pathlib import Path

import gradio as gr

from hf_music import bundled_prompts, load_model
from hf_music.audio import (
    CHANNELS,
    SAMPLE_RATE,
    AudioUnavailableError,
    PianoRenderer,
    note_name,
    piano_roll_figure,
    write_wav,
)
from hf_music.generation import mark_continuation, prompt_to_ids
from hf_music.resources import PROMPTS_DIR
from hf_music.streaming import stream_ids

MODEL_ID = os.environ.get("HF_MUSIC_MODEL") or None
# The slider is the pitch temperature (hf_music.generate_ids' pitch_temperature: which pitches are
# struck, the timing kept as the model has it; plain temperature for a miditok vocabulary, which has
# no grammar). docs/results.md, "Music that does not degenerate": across 0.5-1.5 the embedded model's samples
# stay within MAESTRO excerpts' own out-of-range share + 10 points; 0.8 is the checkpoint's default.
TEMPERATURE_RANGE = (0.5, 1.5)
DEFAULT_TEMPERATURE = 0.8
MAX_UPLOAD_BYTES = 1_000_000  # a long solo piano performance is ~100 kB
MAX_SECONDS = 60  # of new music per click
# Of a start piece: a few bytes of MIDI can hold hours (one held note), so a prompt is cut to its
# first seconds, at most these, whatever the file says (the model's context holds about 50 s).
MAX_PROMPT_SECONDS = 60
MAX_NEW_TOKENS = 4096  # hard cap whatever the density (dense piano is ~40 events per second)
MAX_CONTEXT_TOKENS = 16_384  # "continue the last result" keeps growing the piece up to this
QUEUE_LIMIT = 16  # requests waiting beyond this are told the app is busy (Gradio's queue_full)
NO_PROMPT = "(none: start from silence)"
PROMPTS = bundled_prompts()
# One folder per process, removed at exit. It holds the latest update of the last few requests
# only: Gradio copies each update it sends into its own cache (cleaned by `delete_cache`).
OUTPUT_DIR = Path(tempfile.mkdtemp(prefix="hf_music_space_"))
atexit.register(shutil.rmtree, OUTPUT_DIR, ignore_errors=True)
KEPT_REQUESTS = 4  # request folders kept in OUTPUT_DIR (older ones are deleted)
GRADIO_CACHE_CLEANUP = (600, 3600)  # every 10 minutes, Gradio deletes its copies older than an hour


def prompt_titles() -> dict[str, str]:
    """Bundled prompt name -> "Composer, Title", from the table in assets/prompts/README.md."""
    titles = {}
    for line in (PROMPTS_DIR / "README.md").read_text(encoding="utf-8").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and cells[0].endswith(".mid"):
            titles[Path(cells[0]).stem] = cells[1]
    return {name: titles.get(name, name) for name in PROMPTS}


TITLES = prompt_titles()


@functools.cache
def model_and_tokenizer():
    return load_model(MODEL_ID)


class ComposeError(ValueError):
    """A request the app refuses, with a title and a message for the user."""

    def __init__(self, title: str, message: str):
        super().__init__(message)
        self.title = title


def read_upload(path: str | None) -> bytes | None:
    """The uploaded MIDI bytes, size-checked (the tokenizer checks the rest)."""
    if not path:
        return None
    try:
        size = os.path.getsize(path)
    except OSError as error:  # gone from Gradio's upload folder (cleaned, or the upload never finished)
        raise ComposeError(
            "Cannot use this MIDI file", f"{Path(path).name} could not be read: upload it again"
        ) from error
    if size > MAX_UPLOAD_BYTES:
        raise ComposeError(
            "Cannot use this MIDI file",
            f"{Path(path).name} is {size / 1e6:.1f} MB; the limit is {MAX_UPLOAD_BYTES / 1e6:.0f} MB",
        )
    return Path(path).read_bytes()


def piece_title(path: str) -> str:
    """What a musician calls an uploaded file: "my_first-waltz.mid" -> "my first waltz"."""
    return re.sub(r"[_\-]+", " ", Path(path).stem).strip() or Path(path).name


def describe_notes(notes) -> str:
    """ "12.0 s, 140 notes from A1 to C7": a prompt in musicians' words."""
    if len(notes) == 0:
        return "no notes"
    low, high = int(notes.pitch.min()), int(notes.pitch.max())
    return f"{notes.offset.max():.1f} s, {len(notes)} notes from {note_name(low)} to {note_name(high)}"


def choose_prompt(tokenizer, upload_path, bundled, prompt_seconds, continue_last, last_ids):
    """(ids, notes, label) of what to continue: the last result, an upload, a bundled piece, or silence.

    The prompt's notes are decoded here once and reused for the summary and the piano roll.
    """
    if continue_last and last_ids:
        ids = list(last_ids)[-MAX_CONTEXT_TOKENS:]
        return ids, tokenizer.ids_to_notes(ids), "the last result"
    data = read_upload(upload_path)
    if data is not None:
        source, name, label = data, Path(upload_path).name, f"your piece “{piece_title(upload_path)}”"
    elif bundled and bundled != NO_PROMPT:
        if bundled not in PROMPTS:
            raise ComposeError("Unknown prompt", f"{bundled!r} is none of {', '.join(PROMPTS)}")
        source, name, label = PROMPTS[bundled], bundled, TITLES[bundled]
    else:
        return None, None, "silence"
    window = prompt_window(prompt_seconds)
    try:
        ids = prompt_to_ids(source, tokenizer, window, name=name)
        whole = tokenizer.midi_to_notes(source, name=name)
    except ValueError as error:  # MidiReadError ("<name>: <problem>"), also from a checkpoint's own code copy
        raise ComposeError("Cannot use this MIDI file", str(error)) from error
    notes = tokenizer.ids_to_notes(ids)
    if len(notes) == 0:
        raise ComposeError("Cannot use this MIDI file", f"{name}: the file has no notes to continue")
    return ids, notes, kept_part(label, whole, window)


def prompt_window(prompt_seconds) -> float:
    """The seconds of a start piece that are continued: the slider's value, 0 meaning all of it
    up to MAX_PROMPT_SECONDS."""
    return float(min(prompt_seconds or MAX_PROMPT_SECONDS, MAX_PROMPT_SECONDS))


def kept_part(label: str, whole_notes, window: float) -> str:
    """The label of a start piece, saying when only its first seconds are used."""
    length = float(whole_notes.offset.max(initial=0))
    return f"the first {window:g} s of {label}" if length > window else label


# The model and torch's global random state are shared: one chunk at a time. Each request keeps its
# own random state between its chunks, so requests never draw from each other's stream.
generate_lock = threading.Lock()


def compose_stream(
    temperature, top_k, top_p, seconds, seed, random_seed, bundled, upload, prompt_seconds, continue_last,
    last_ids=None,
):  # fmt: skip
    """Yield (audio WAV path, piano roll, MIDI path, facts, ids, seed) after each chunk; ComposeError
    for what cannot be done."""
    started = time.perf_counter()
    try:
        model, tokenizer = model_and_tokenizer()
    except (OSError, ValueError) as error:  # a wrong HF_MUSIC_MODEL, no network, no embedded model
        raise ComposeError("Model", f"cannot load the model {MODEL_ID or '(embedded)'}: {error}") from error
    prompt, prompt_notes, prompt_label = choose_prompt(
        tokenizer, upload, bundled, prompt_seconds, continue_last, last_ids
    )
    seed = random.randrange(2**31) if random_seed or seed is None else int(seed)
    seconds = float(min(max(seconds or 1, 1), MAX_SECONDS))
    prompt_end = float(prompt_notes.offset.max(initial=0)) if prompt_notes is not None else 0.0
    continuing = f"continuing {prompt_label} ({describe_notes(prompt_notes)})" if prompt else "from silence"
    folder = request_folder()
    slider = "pitch_temperature" if "pitch_temperature" in tokenizer.sampling_controls else "temperature"
    sampling = {slider: float(temperature), "top_k": int(top_k or 0) or None, "top_p": float(top_p)}
    try:
        renderer, audio_note = PianoRenderer(SAMPLE_RATE, channels=CHANNELS), ""
    except AudioUnavailableError as error:
        renderer, audio_note = None, f" Audio unavailable: {error}."
    try:
        chunks = stream_ids(
            model, tokenizer, prompt, seconds, seed, MAX_NEW_TOKENS, lock=generate_lock, **sampling
        )
        previous = []  # the last update's files
        for number, (ids, done) in enumerate(chunks):
            score, notes, piece, now = decoded(tokenizer, ids)  # once: audio, piano roll and MIDI use these
            audio = render_chunk(renderer, piece, now, done, folder / f"audio_{number}.wav")
            midi_path = folder / f"part_{number}" / f"hf_music_seed{seed}.mid"
            midi_path.parent.mkdir()
            (mark_continuation(score, prompt_end) if prompt else score).dump_midi(str(midi_path))
            figure = piano_roll_figure(notes, prompt_seconds=prompt_end or None,
                                       total_seconds=prompt_end + seconds)  # fmt: skip
            written = now - prompt_end
            progress = (
                f"**{len(notes)} notes, {now:.1f} s, {len(ids) - len(prompt or [1])} new tokens**"
                if done
                else f"**Writing: {max(written, 0):.1f} of {seconds:g} s** ({len(notes)} notes so far)"
            )
            facts = (
                f"{progress} {continuing}; {time.perf_counter() - started:.1f} s since the click "
                f"(seed {seed}, temperature {float(temperature):g}).{audio_note}"
            )
            # Gradio has copied the last update into its cache by now: only the latest stays here.
            delete_files(previous)
            previous = [midi_path.parent, *([Path(audio)] if audio else [])]
            yield audio, figure, str(midi_path), facts, ids, seed
    finally:
        if renderer is not None:
            renderer.close()


def request_folder() -> Path:
    """A new folder for a request's files in OUTPUT_DIR, whose older request folders beyond the
    newest KEPT_REQUESTS are deleted."""
    folders = sorted((f for f in OUTPUT_DIR.iterdir() if f.is_dir()), key=lambda f: f.stat().st_mtime)
    delete_files(folders[: max(0, len(folders) - KEPT_REQUESTS + 1)])
    return Path(tempfile.mkdtemp(dir=OUTPUT_DIR))


def delete_files(paths) -> None:
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def decoded(tokenizer, ids):
    """(Score, its notes, what to play, seconds of music so far) of the ids: a vocabulary that keeps
    instruments plays its Score (each track on its own program), others their notes on one piano."""
    score, notes = tokenizer.decode_midi(ids), tokenizer.ids_to_notes(ids)
    return score, notes, score if tokenizer.keeps_instruments else notes, tokenizer.seconds(ids)


def render_chunk(renderer, notes, now: float, done: bool, path: Path) -> str | None:
    """The audio so far as a stereo WAV file (None without a soundfont): up to `now`, or, once the
    piece is done, to its end with the last notes ringing out."""
    if renderer is None:
        return None
    if done:
        renderer.finish(notes)
    else:
        renderer.render(notes, now)
    return write_wav(renderer.samples(), path, SAMPLE_RATE)


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
    """The API (/compose): streams (audio, piano roll, MIDI file, facts, ids, seed); gr.Error for bad input."""
    try:
        yield from compose_stream(temperature, top_k, top_p, seconds, seed, random_seed, bundled, upload,
                                  prompt_seconds, continue_last, last_ids)  # fmt: skip
    except ComposeError as error:
        raise gr.Error(str(error), title=error.title) from error


def compose_ui(*inputs):
    """The page's Generate: like `compose`, but a refusal is a message beside the result, which stays."""
    try:
        for audio, figure, midi, facts, ids, seed in compose_stream(*inputs):
            yield audio, figure, midi, facts, "", ids, seed
    except ComposeError as error:
        kept = gr.skip()
        yield kept, kept, kept, kept, f"⚠️ **{error.title}**: {error}. Your last piece is kept.", kept, kept


def compose_example(bundled, temperature, seconds, seed):
    """An example: a bundled piece's first 10 s continued with the example's settings and seed."""
    yield from compose_ui(temperature, 0, 1.0, seconds, seed, False, bundled, None, 10, False, None)


def describe_upload(path: str | None, prompt_seconds: float = 0) -> str:
    """What part of an upload will be continued, shown when the file is dropped or the slider moves."""
    if not path:
        return ""
    _, tokenizer = model_and_tokenizer()
    window, name, label = prompt_window(prompt_seconds), Path(path).name, f"your piece “{piece_title(path)}”"
    try:
        data = read_upload(path)
        whole = tokenizer.midi_to_notes(data, name=name)
        kept = tokenizer.ids_to_notes(prompt_to_ids(data, tokenizer, window, name=name))
    except (ComposeError, ValueError) as error:
        return f"⚠️ {error}"
    part = kept_part(label, whole, window)
    rest = "" if part == label else f"; the file lasts {whole.offset.max():.1f} s"
    return f"Generate continues **{part}** ({describe_notes(kept)}{rest})."


def stopped(facts: str | None = None) -> tuple[str, str]:
    """(message, facts) after Stop: the progress line says the piece stopped, not that it is being written."""
    facts = re.sub(r"\*\*Writing: ([\d.]+) of ([\d.]+) s\*\*", r"**Stopped after \1 of \2 s**", facts or "")
    return "Stopped: the piece so far stays playable, and the MIDI file holds it.", facts


EXAMPLES = [  # bundled prompt, temperature, seconds, seed
    ["scarlatti_sonata_k525", 0.8, 20, 7],
    ["chopin_etude_op10_no9", 0.7, 20, 3],
    ["bach_prelude_fugue_f_sharp_major_bwv858", 1.0, 15, 11],
]
CSS = """
#facts, #message { min-height: 1.5em; }
"""


def build_demo() -> gr.Blocks:
    with gr.Blocks(title="Music Transformer (hf_music)", delete_cache=GRADIO_CACHE_CLEANUP) as demo:
        gr.Markdown(
            "## Music Transformer\nSolo piano from a small GPT-2-style model trained on MAESTRO "
            "performances. You hear and see the piece while it is written."
        )
        last_ids = gr.State(None)
        with gr.Row():
            with gr.Column(scale=1, min_width=320):
                with gr.Row():
                    generate = gr.Button("Generate", variant="primary", elem_id="generate", min_width=100)
                    stop = gr.Button("Stop", variant="stop", elem_id="stop", min_width=80)
                temperature = gr.Slider(
                    *TEMPERATURE_RANGE, value=DEFAULT_TEMPERATURE, step=0.1, elem_id="temperature",
                    label="Temperature", info="How freely it picks pitches: 0.5 keeps to a key, 0.8 is closest "
                    "to the performances it learned, 1.5 wanders",
                )  # fmt: skip
                seconds = gr.Slider(
                    5, MAX_SECONDS, value=20, step=1, label="Seconds of new music", elem_id="seconds"
                )
                bundled = gr.Dropdown(
                    [(NO_PROMPT, NO_PROMPT), *((TITLES[name], name) for name in PROMPTS)], value=NO_PROMPT,
                    label="Start from", elem_id="bundled",
                )  # fmt: skip
                continue_last = gr.Checkbox(value=False, label="Continue my piece (the last result)")
                with gr.Accordion("Your MIDI file", open=False):
                    upload = gr.File(
                        label="Upload a MIDI file to continue", file_types=[".mid", ".midi"], type="filepath",
                        elem_id="upload", height=120,
                    )  # fmt: skip
                    upload_info = gr.Markdown(elem_id="upload-info")
                    prompt_seconds = gr.Slider(
                        0, MAX_PROMPT_SECONDS, value=10, step=1,
                        label=f"Seconds of the start piece to continue, from its beginning (0 = all, up to {MAX_PROMPT_SECONDS} s)",
                    )  # fmt: skip
                with gr.Accordion("Sampling", open=False):
                    # Truncation made this model repeat itself (degeneration table of 2026-11-26: top-p 0.95 3/12, min-p 0.05
                    # 7/12 samples out of range, against 1/12 without): off by default.
                    top_k = gr.Slider(0, 100, value=0, step=1, label="Top-k (0 = off)")
                    top_p = gr.Slider(0.05, 1.0, value=1.0, step=0.05, label="Top-p (1 = off)")
                    with gr.Row():
                        seed = gr.Number(value=0, precision=0, label="Seed", elem_id="seed")
                        random_seed = gr.Checkbox(value=True, label="Random seed", elem_id="random-seed")
            with gr.Column(scale=2):
                message = gr.Markdown(elem_id="message")
                facts = gr.Markdown(elem_id="facts")
                audio = gr.Audio(label="Listen", type="filepath", elem_id="audio", interactive=False)
                roll = gr.Plot(label="Piano roll", elem_id="piano-roll")
                midi = gr.File(label="MIDI file", elem_id="midi", interactive=False)
        inputs = [temperature, top_k, top_p, seconds, seed, random_seed, bundled, upload, prompt_seconds,
                  continue_last, last_ids]  # fmt: skip
        ui_outputs = [audio, roll, midi, facts, message, last_ids, seed]
        shared = dict(concurrency_id="compose", concurrency_limit=1, show_progress="minimal")
        writing = generate.click(compose_ui, inputs, ui_outputs, api_visibility="private", **shared)
        stop.click(stopped, facts, [message, facts], cancels=[writing], queue=False)
        for changed in (upload.change, prompt_seconds.release):
            changed(describe_upload, [upload, prompt_seconds], upload_info, queue=False)
        # Scripted users: /compose with the parameter names above, streaming too; errors raise.
        gr.Button(visible=False).click(
            compose, inputs, [audio, roll, midi, facts, last_ids, seed], api_name="compose", **shared
        )
        gr.Examples(
            EXAMPLES, [bundled, temperature, seconds, seed], ui_outputs, compose_example,
            run_on_click=True, cache_mode="lazy", elem_id="examples",
            example_labels=[f"{TITLES[name]} · temperature {t:g} · {s} s" for name, t, s, _ in EXAMPLES],
        )  # fmt: skip
    return demo.queue(max_size=QUEUE_LIMIT)


demo = build_demo()


def launch(**kwargs):
    """demo.launch with the app's limits (upload size, the folder of generated files) and style."""
    return demo.launch(max_file_size=MAX_UPLOAD_BYTES, allowed_paths=[str(OUTPUT_DIR)], css=CSS, **kwargs)


def server_name() -> str:
    """Where the app listens: $GRADIO_SERVER_NAME when set, all interfaces on a Hugging Face Space
    (which sets $SPACE_ID), else this machine only."""
    return os.environ.get("GRADIO_SERVER_NAME") or ("0.0.0.0" if os.environ.get("SPACE_ID") else "127.0.0.1")


if __name__ == "__main__":
    launch(server_name=server_name())
