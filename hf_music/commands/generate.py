"""Generate piano music and write MIDI (and WAV) files: `python -m hf_music`, `hf-music generate` or scripts/generate.py.

    python -m hf_music --out piece.mid                     # 20 s from the embedded model, offline
    python -m hf_music --prompt chopin_etude_op10_no9 --prompt_seconds 10 --seconds 30 --pitch_temperature 0.7
    python -m hf_music --model user/music-transformer --samples 3 --seed 0 --out runs/samples/piece.mid

--model takes a checkpoint folder or a Hub id; a music_transformer checkpoint is loaded with
this package's classes, so no code from the checkpoint runs (--trust_remote_code allows it for
other model types). A WAV file (44.1 kHz stereo, as the Space's) is
written next to each MIDI file when a General MIDI soundfont and FluidSynth are installed.
With --prompt, each MIDI file holds the prompt, then the new music after a marker
("hf_music: new music starts here").
"""

from __future__ import annotations

import argparse
import secrets
import sys
import time
from pathlib import Path

from hf_music.audio import CHANNELS, SAMPLE_RATE, AudioUnavailableError, render_audio, write_wav
from hf_music.generation import BACKENDS, generate_ids, mark_continuation, prompt_to_ids, sampling_settings
from hf_music.music_tokenizer import offers_grammar
from hf_music.resources import bundled_prompts, load_model, override_tokenizer


def parse_args(argv=None):
    prompts = bundled_prompts()
    parser = argparse.ArgumentParser(
        prog=sys.argv[0] if sys.argv[0].startswith("hf-music") else "python -m hf_music",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--model", default=None, help="checkpoint folder or Hub id (default: the embedded model)"
    )
    parser.add_argument(
        "--prompt", default=None, help=f"MIDI file to continue, or a bundled one: {', '.join(prompts)}"
    )
    parser.add_argument(
        "--prompt_seconds", type=float, default=None,
        help=f"use only the prompt's first N seconds (default: all of it, up to {MAX_PROMPT_SECONDS:g} s)",
    )  # fmt: skip
    parser.add_argument(
        "--seconds",
        type=float,
        default=None,
        help=f"seconds of new music per piece, at most {MAX_SECONDS:g} (default 20 without --max_new_tokens)",
    )
    parser.add_argument(
        "--max_new_tokens", type=int, default=None, help="new events per piece (a cap with --seconds)"
    )
    parser.add_argument("--out", default="piece.mid", help="output .mid (numbered when --samples > 1)")
    parser.add_argument("--no_wav", action="store_true", help="do not render WAV files")
    parser.add_argument("--samples", "--num", type=int, default=1, dest="samples", help="number of pieces")
    parser.add_argument(
        "--temperature", type=float, default=None, help="default: the model's generation_config.json"
    )
    parser.add_argument(
        "--pitch_temperature", type=float, default=None,
        help="temperature of which pitches are struck, timing kept (below 1: in a key; default: the model's "
        "generation_config.json, else 0.8)",
    )  # fmt: skip
    parser.add_argument(
        "--soft_note_seconds", type=float, default=None,
        help="past this a held note's odds of release grow (default: generation_config.json, else 2)",
    )  # fmt: skip
    parser.add_argument(
        "--repeat_penalty", type=float, default=None,
        help="nats a repeated strike of the pitch just struck costs per strike in the run (0: off; "
        "default: generation_config.json, else 1)",
    )  # fmt: skip
    parser.add_argument("--top_k", type=int, default=None, help="default: the model's generation_config.json")
    parser.add_argument(
        "--top_p", type=float, default=None, help="default: the model's generation_config.json"
    )
    parser.add_argument(
        "--min_p", type=float, default=None, help="default: the model's generation_config.json"
    )
    parser.add_argument(
        "--seed", type=int, default=None, help="default: a random one, printed, so a piece can be made again"
    )
    parser.add_argument("--unconstrained", action="store_true", help="turn grammar-aware sampling off")
    parser.add_argument(
        "--backend", choices=BACKENDS, default="auto",
        help="lean: hf_music's own decoder (hf_music.decoding; the same ids as model.generate for a seed); "
        "onnx, onnx-int8: its step on onnxruntime (the onnx extra), float32 or int8 matrix products (fastest, "
        "NLL +0.4%%); transformers: model.generate; auto (default): lean for hf_music's GPT-2 models with the "
        "performance vocabulary. --samples N are one batched run",
    )  # fmt: skip
    parser.add_argument(
        "--trust_remote_code",
        action="store_true",
        help="allow a non-music_transformer --model to run its code",
    )
    parser.add_argument("--device", default=None, help="e.g. cuda, cpu (default: where the model loads)")
    parser.add_argument(
        "--tokenizer", default=None,
        help="a saved tokenizer folder to use instead of the checkpoint's own (same vocabulary size)",
    )  # fmt: skip
    return parser.parse_args(argv)


# The longest piece one command makes (a sliding window keeps going past the model's context).
MAX_SECONDS = 600.0
# The event budget per second of music when only --seconds is given: dense piano needs about 45.
TOKENS_PER_SECOND_CAP = 100
MIDITOK_DEFAULT_TOKENS = 1024  # new tokens per piece for a miditok vocabulary without --seconds
# The longest prompt: a few bytes of MIDI can hold hours (one held note), and the model looks at
# its last ~50 s anyway; with MAX_SECONDS of new music the WAV stays under audio's 20-minute cap.
MAX_PROMPT_SECONDS = 300.0


def main(argv=None) -> list[Path]:
    """The command line: one line on stderr and exit status 1 for a bad input, never a traceback."""
    try:
        return compose(parse_args(argv))
    except (ValueError, OSError, AudioUnavailableError) as error:  # MidiReadError is a ValueError
        sys.exit(f"python -m hf_music: error: {error}")


def compose(args) -> list[Path]:
    started = time.perf_counter()
    model, tokenizer = quiet_load(args)
    prompt, prompt_end = read_prompt(
        tokenizer, bundled_prompts().get(args.prompt, args.prompt), args.prompt_seconds
    )
    loaded = time.perf_counter()
    # A vocabulary without a clock in its ids (miditok's) has its default length in tokens (MMM writes
    # whole tracks one after another, so a length in seconds could stop before the second track).
    default_seconds = None if tokenizer.time_step is None else 20.0
    seconds = args.seconds if args.seconds is not None or args.max_new_tokens else default_seconds
    if seconds is not None and not 0 < seconds <= MAX_SECONDS:
        raise ValueError(f"--seconds must be in (0, {MAX_SECONDS:g}], got {seconds:g}")
    max_new_tokens = args.max_new_tokens or (
        MIDITOK_DEFAULT_TOKENS if seconds is None else max(4096, int(seconds * TOKENS_PER_SECOND_CAP))
    )
    if not offers_grammar(tokenizer):
        print(
            f"vocabulary: {tokenizer.vocabulary_description}, {max_new_tokens} new tokens per piece; "
            "grammar-aware sampling and its limits are the performance vocabulary's and stay off"
        )
    seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
    sampling = dict(
        temperature=args.temperature, pitch_temperature=args.pitch_temperature, top_k=args.top_k,
        top_p=args.top_p, min_p=args.min_p,
        **{name: getattr(args, name) for name in ("soft_note_seconds", "repeat_penalty") if getattr(args, name) is not None},
    )  # fmt: skip
    settings = sampling_settings(model, **sampling)
    print(
        f"seed {seed}; "
        + ", ".join(f"{k} {v}" for k, v in settings.items() if v is not None)
        + f" (again: --seed {seed})"
    )
    rows = generate_ids(
        model, tokenizer, prompt=prompt, max_new_tokens=max_new_tokens, max_seconds=seconds, **sampling,
        seed=seed, num_return_sequences=args.samples, constrained=not args.unconstrained, progress=True,
        backend=args.backend,
    )  # fmt: skip
    generated = time.perf_counter()
    out, written = Path(args.out), []
    out.parent.mkdir(parents=True, exist_ok=True)
    for i, row in enumerate(rows):
        path = out if len(rows) == 1 else out.with_name(f"{out.stem}_{i + 1}{out.suffix or '.mid'}")
        score = tokenizer.decode_midi(row)
        if args.prompt is not None:
            score = mark_continuation(score, prompt_end)
        score.dump_midi(str(path))
        written.append(path)
        tracks = [track for track in score.tracks if track.note_num()]
        instruments = f", {len(tracks)} tracks (programs {', '.join(str(t.program) for t in tracks)})"
        print(
            f"wrote {path}: {score.note_num()} notes, {score.to('second').end():.1f} s, {len(row)} tokens"
            + (instruments if tokenizer.keeps_instruments else "")
        )
        if not args.no_wav:
            try:
                wav = write_wav(
                    render_audio(score, SAMPLE_RATE, channels=CHANNELS), path.with_suffix(".wav"), SAMPLE_RATE
                )
                written.append(Path(wav))
                print(f"wrote {wav}")
            except AudioUnavailableError as error:
                print(f"no WAV: {error}")
    tokens = sum(len(row) for row in rows)
    print(
        f"model loaded in {loaded - started:.1f} s; {tokens} tokens (prompts included) in {generated - loaded:.1f} s; "
        f"total {time.perf_counter() - started:.1f} s"
    )
    return written


def quiet_load(args):
    """(model, tokenizer) without transformers' "Loading weights" bar on every command; a
    download from the Hub keeps its progress bars."""
    import huggingface_hub.utils
    from transformers.utils import logging as transformers_logging

    downloads_shown = not huggingface_hub.utils.are_progress_bars_disabled()
    transformers_logging.disable_progress_bar()
    if downloads_shown:
        huggingface_hub.utils.enable_progress_bars()
    try:
        model, tokenizer = load_model(args.model, args.device, trust_remote_code=args.trust_remote_code)
    finally:
        transformers_logging.enable_progress_bar()
        if not downloads_shown:
            huggingface_hub.utils.disable_progress_bars()
    return model, override_tokenizer(model, tokenizer, args.tokenizer)


def read_prompt(tokenizer, prompt, prompt_seconds: float | None) -> tuple[list[int], float]:
    """(ids, seconds of music in them) of the prompt, cut to its first ``prompt_seconds`` (all of
    it by default, but never more than MAX_PROMPT_SECONDS: a longer file is cut, and told so)."""
    if prompt is None:
        return prompt_to_ids(None, tokenizer), 0.0
    window = MAX_PROMPT_SECONDS if prompt_seconds is None else prompt_seconds
    if not 0 < window <= MAX_PROMPT_SECONDS:
        raise ValueError(f"--prompt_seconds must be in (0, {MAX_PROMPT_SECONDS:g}], got {window:g}")
    ids = prompt_to_ids(prompt, tokenizer, window)
    length = float(tokenizer.midi_to_notes(prompt).offset.max(initial=0))
    if length == 0:
        print(f"prompt: {Path(prompt).name} has no notes: composing from silence")
    elif prompt_seconds is None and length > window:
        print(
            f"prompt: the first {window:g} s of {Path(prompt).name}, which lasts {length:.0f} s (--prompt_seconds)"
        )
    return ids, float(tokenizer.seconds(ids))


if __name__ == "__main__":
    main()
