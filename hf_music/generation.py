"""Sampling music: `generate_midi`, the grammar-aware LogitsProcessor and the sliding window.

Generation runs through `hf_music.decoding` (a preallocated KV cache, one step per token; for
hf_music's GPT-2 models) or ``model.generate`` (``backend="transformers"``, and other models), both
with transformers' temperature / top-k / top-p / min-p warpers and the grammar of
`hf_music.music_transformer.grammar` (a self-contained module that checkpoints also carry as
``custom_generate/generate.py``). Pieces longer than the model's context continue with a sliding
window: the most recent half of the context re-primes the model, and the grammar state
(which pitches are sounding) is carried over from the whole history.
"""

from __future__ import annotations

import numpy as np
import torch
from transformers import LogitsProcessorList, StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

from .decoding import LeanSampler, reprime_length, sampling_processors, supports_lean_decoding
from .music_tokenizer import offers_grammar
from .music_transformer.grammar import (
    GRAMMAR_DEFAULTS,
    PerformanceGrammarLogitsProcessor,
    grammar_violations,
    sounding_clock,
    sounding_pitches,
)
from .music_transformer.tokenization_music_transformer import MidiTokenizer


def time_steps(ids: torch.Tensor, tokenizer: MidiTokenizer) -> torch.Tensor:
    """Per row, the time the TIME_SHIFT events of `ids` advance, in steps of time_resolution_ms."""
    steps_of_id = torch.as_tensor(tokenizer.steps_of_id, device=ids.device)  # merged tokens included
    ids = ids.long()  # torch.tensor of empty rows is float
    known = ids < len(steps_of_id)  # a model's vocabulary may be padded past the tokenizer's
    return torch.where(known, steps_of_id[ids.clamp(max=len(steps_of_id) - 1)], 0).sum(dim=-1)


class _DurationCriteria(StoppingCriteria):
    """Stops a row once the music generated so far (earlier windows included) lasts `needed` steps.

    Adds only the tokens new since its last call: a whole-row sum per step would grow with the piece.
    """

    def __init__(self, tokenizer: MidiTokenizer, start: int, steps_before: torch.Tensor, needed: int):
        self.tokenizer, self.seen, self.steps, self.needed = tokenizer, start, steps_before.clone(), needed

    def __call__(self, input_ids, scores, **kwargs):
        self.steps += time_steps(input_ids[:, self.seen :], self.tokenizer)
        self.seen = input_ids.shape[1]
        return self.steps >= self.needed


class _ProgressStreamer(BaseStreamer):
    """Advances a tqdm bar per generated token (the first put is the prompt): by one token, or,
    with ``tokenizer``, to the seconds of music the slowest row has reached."""

    def __init__(self, bar, tokenizer: MidiTokenizer | None = None, done_steps=None):
        self.bar, self.tokenizer = bar, tokenizer
        self.steps = done_steps  # per row, the music generated so far, in time steps
        self.prompt_seen = False

    def put(self, value):
        if self.prompt_seen and self.tokenizer is None:
            self.bar.update(1)
        elif self.prompt_seen:
            self.steps = self.steps + time_steps(value.reshape(len(self.steps), -1).cpu(), self.tokenizer)
            seconds = round(float(self.steps.min()) * self.tokenizer.time_step, 1)
            self.bar.update(min(seconds, self.bar.total) - self.bar.n)
        self.prompt_seen = True

    def end(self):
        self.prompt_seen = False


def prompt_to_ids(
    prompt, tokenizer: MidiTokenizer, prompt_seconds: float | None = None, name: str | None = None
) -> list[int]:
    """A prompt (None, MIDI path, bytes, Score or ids) as ids starting with <bos>, without <eos>.

    ``prompt_seconds`` keeps only the notes of a MIDI prompt that start before that time;
    ``name`` is how errors about MIDI bytes name them (an uploaded file's name, say).
    """
    if prompt is None:
        ids = []
    elif isinstance(prompt, torch.Tensor | np.ndarray):
        ids = [
            int(i) for i in np.asarray(prompt.cpu() if isinstance(prompt, torch.Tensor) else prompt).ravel()
        ]
    elif isinstance(prompt, list | tuple) and all(isinstance(i, int | np.integer) for i in prompt):
        ids = [int(i) for i in prompt]
    else:
        ids = tokenizer.encode_midi(prompt, add_special_tokens=False, max_seconds=prompt_seconds, name=name)
    while ids and ids[-1] in (tokenizer.eos_token_id, tokenizer.pad_token_id):
        ids.pop()
    if not ids or ids[0] != tokenizer.bos_token_id:
        ids.insert(0, tokenizer.bos_token_id)
    return ids


class _DecodedDurationCriteria(StoppingCriteria):
    """For a vocabulary without a clock in its ids (miditok's): every ``every`` tokens, decode each row and stop those whose new music
    (after the prompt's) lasts ``max_seconds``. With MMM, tracks come one after another, so the first
    track alone can reach the length: give such vocabularies ``max_new_tokens`` instead."""

    def __init__(
        self, tokenizer, rows, window_length: int, prompt_seconds: float, max_seconds: float, every=64
    ):
        self.tokenizer, self.rows, self.window_length = tokenizer, rows, window_length
        self.prompt_seconds, self.max_seconds, self.every = prompt_seconds, max_seconds, every

    def __call__(self, input_ids, scores, **kwargs):
        new = input_ids.shape[1] - self.window_length
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        if new == 0 or new % self.every:
            return done
        for i, row in enumerate(input_ids[:, self.window_length :].tolist()):
            seconds = self.tokenizer.seconds(self.rows[i] + row) - self.prompt_seconds
            done[i] = seconds >= self.max_seconds
        return done


UNSET = object()  # an argument left out: the checkpoint's generation_config decides
# What hf_music samples with when neither the caller nor the checkpoint's generation_config says.
SAMPLING_DEFAULTS = {
    "temperature": 1.0,
    "top_k": None,
    "top_p": None,
    "min_p": None,
    **GRAMMAR_DEFAULTS,  # the grammar's limits and soft rules
}
# Settings for which None from the caller means "off", not "not given".
LIMITS = ("max_polyphony", "max_silence_seconds", "max_note_seconds", "soft_note_seconds", "repeat_penalty")


def sampling_settings(model, **given) -> dict:
    """Sampling settings: the caller's, else the model's generation_config, else SAMPLING_DEFAULTS.

    None from the caller means "off" for the LIMITS (max_polyphony, max_silence_seconds,
    max_note_seconds, soft_note_seconds, repeat_penalty) and "not given" for temperature / pitch_temperature /
    top_k / top_p / min_p, as in transformers; top_k 0 and top_p 1.0 mean off.
    """
    config = getattr(model, "generation_config", None)
    settings = {}
    for name, default in SAMPLING_DEFAULTS.items():
        value = given.get(name, UNSET)
        is_limit = name in LIMITS
        if value is UNSET or (value is None and not is_limit):
            value = getattr(config, name, None) if config is not None else None
            value = default if value is None and (is_limit or name.endswith("temperature")) else value
        settings[name] = value
    return settings


@torch.inference_mode()
def generate_ids(
    model,
    tokenizer: MidiTokenizer,
    prompt=None,
    prompt_seconds: float | None = None,
    max_new_tokens: int = 1024,
    temperature: float | None = None,
    pitch_temperature: float | None = None,
    top_k: int | None = None,
    top_p: float | None = None,
    min_p: float | None = None,
    seed: int | None = None,
    num_return_sequences: int = 1,
    constrained: bool = True,
    max_polyphony: int | None = UNSET,
    max_silence_seconds: float | None = UNSET,
    max_note_seconds: float | None = UNSET,
    soft_note_seconds: float | None = UNSET,
    repeat_penalty: float | None = UNSET,
    stop_at_eos: bool = False,
    max_seconds: float | None = None,
    progress: bool = False,
    backend: str = "auto",
) -> list[list[int]]:
    """Sample token ids (prompt included), one list per sequence.

    Args:
        model, tokenizer: a Music Transformer and its MidiTokenizer.
        prompt: None, a MIDI path, bytes, a ``symusic.Score`` or token ids; the output continues it.
        prompt_seconds: keep only the first seconds of a MIDI prompt.
        max_new_tokens: events to add; beyond the model's context a sliding window keeps going.
        temperature, top_k, top_p, min_p: sampling controls (temperature must be > 0). Left out,
            they come from ``model.generation_config`` (the checkpoint's generation_config.json),
            as do max_polyphony, max_silence_seconds and max_note_seconds; see `sampling_settings`.
        seed: a fixed seed gives identical output (the global RNG is left untouched).
        num_return_sequences: pieces sampled together from the same prompt.
        constrained: grammar-aware sampling (`PerformanceGrammarLogitsProcessor`).
        max_polyphony: with ``constrained``, at most this many pitches sound at once.
        max_silence_seconds: with ``constrained``, no silence (no pitch sounding) lasts longer
            (None: no limit). The leading silence of a piece counts too.
        max_note_seconds: with ``constrained``, a note held this long is released (None: never).
        pitch_temperature: with ``constrained``, temperature over which pitch each NOTE_ON strikes
            (the timing and dynamics keep the model's odds); below 1 the music keeps to a key.
        soft_note_seconds: with ``constrained``, past this a held note's odds of release grow
            e-fold every quarter second (None: off), so notes end before max_note_seconds.
        repeat_penalty: with ``constrained``, striking the pitch just struck again costs this many
            nats per strike of it in a row so far, its probability going to other pitches (None: off).
        stop_at_eos: stop a sequence at <eos>; by default <eos> is masked so every piece has
            the requested length.
        max_seconds: stop a sequence once its new music lasts this long (``max_new_tokens``
            stays the hard cap; dense music needs about 40 events per second).
        progress: show a tqdm progress bar.
        backend: "lean" samples with `hf_music.decoding` (a preallocated KV cache, one step per
            token; the performance vocabulary and GPT-2 models only), "transformers" with
            ``model.generate``, "auto" (default) with "lean" where it applies. With one context's
            worth of tokens both give the same ids for a seed; past the context both re-prime on
            the most recent half of it (`hf_music.decoding.reprime_length`). "onnx" and
            "onnx-int8" run lean's step on onnxruntime (`hf_music.onnx_decoding`, the onnx extra;
            float32 models on the CPU): float32 (the same distribution, faster) or int8 matrix
            products (the fastest; next-event NLL +0.4% on MAESTRO test).
    """
    settings = sampling_settings(
        model, temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p, max_polyphony=max_polyphony,
        max_silence_seconds=max_silence_seconds, max_note_seconds=max_note_seconds,
        pitch_temperature=pitch_temperature, soft_note_seconds=soft_note_seconds, repeat_penalty=repeat_penalty,
    )  # fmt: skip
    if not settings["temperature"] > 0:
        raise ValueError(
            f"temperature must be > 0, got {settings['temperature']} (use a small value such as 0.1 for near-greedy)"
        )
    if max_new_tokens < 1 or num_return_sequences < 1:
        raise ValueError("max_new_tokens and num_return_sequences must be >= 1")
    grammar_offered = offers_grammar(tokenizer)  # the grammar is the performance vocabulary's
    constrained = constrained and grammar_offered
    prompt_ids = prompt_to_ids(prompt, tokenizer, prompt_seconds)
    rows = [list(prompt_ids) for _ in range(num_return_sequences)]
    start, target = len(prompt_ids), len(prompt_ids) + max_new_tokens
    duration = _Duration(tokenizer, prompt_ids, start, max_seconds)
    device = next(model.parameters()).device
    backend = _backend_of(backend, model, tokenizer)
    bar = _progress_bar(max_new_tokens, duration) if progress else None
    was_training = model.training
    model.eval()
    try:
        with torch.random.fork_rng(
            devices=[device] if device.type == "cuda" else [], enabled=seed is not None
        ):
            if seed is not None:
                torch.manual_seed(seed)
            if backend != "transformers":
                rows = _sample_lean(
                    model, tokenizer, settings, rows, constrained, stop_at_eos, max_new_tokens, duration, bar,
                    backend,
                )  # fmt: skip
            else:
                _sample_transformers(
                    model, tokenizer, settings, rows, constrained, stop_at_eos, target, duration, bar
                )
    finally:
        if bar is not None:
            bar.close()
        model.train(was_training)
    return _trimmed(rows, start, target, tokenizer)


BACKENDS = ("auto", "lean", "onnx", "onnx-int8", "transformers")


def _backend_of(backend: str, model, tokenizer) -> str:
    """The sampler to use: `LeanSampler` with `DecoderStep` ("lean") or with onnxruntime's step
    ("onnx", "onnx-int8"): a GPT-2 model and a vocabulary with the grammar and a clock in its ids
    (the performance events); else ``model.generate`` ("transformers"). "auto" is "lean" where it applies."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    applies = supports_lean_decoding(model) and offers_grammar(tokenizer) and tokenizer.time_step is not None
    if backend == "transformers" or (backend == "auto" and not applies):
        return "transformers"
    if backend.startswith("onnx"):
        from .onnx_decoding import supports_onnx_decoding

        applies = applies and supports_onnx_decoding(model)
    if not applies:
        raise ValueError(
            f"backend={backend!r} needs a GPT-2 model{' in float32 on the CPU' if backend != 'lean' else ''} "
            f"and the performance vocabulary ({type(model).__name__} with this tokenizer): use backend='transformers'"
        )
    return "lean" if backend == "auto" else backend


def _sample_lean(
    model, tokenizer, settings, rows, constrained, stop_at_eos, max_new_tokens, duration, bar, backend="lean"
):
    """All windows with `LeanSampler`: the grammar follows the whole piece, re-priming included."""
    grammar = _grammar(tokenizer, settings, rows, stop_at_eos)[0] if constrained else None
    sampling = _sampling_kwargs(settings, tokenizer)
    # Without the grammar, <eos> is masked as model.generate's min_new_tokens masks it.
    suppress = () if stop_at_eos or constrained else (tokenizer.eos_token_id,)
    device = next(model.parameters()).device
    warpers = {name: sampling[name] for name in ("temperature", "top_k", "top_p", "min_p")}
    processors = sampling_processors(grammar, **warpers, suppress=suppress, device=device)
    step = None
    if backend.startswith("onnx"):
        from .onnx_decoding import onnx_step

        step = onnx_step(model, weights="int8" if backend == "onnx-int8" else "float32")
    sampler = LeanSampler(
        model, processors, tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.steps_of_id, step=step
    )
    on_token = None if bar is None else _bar_updater(bar, tokenizer, duration)
    out = sampler.sample(
        torch.tensor(rows, device=device), max_new_tokens,
        steps_done=duration.steps_done(rows) if duration.steps_needed is not None else None,
        steps_needed=duration.steps_needed, on_token=on_token,
    )  # fmt: skip
    return out.tolist()


def _bar_updater(bar, tokenizer, duration):
    """Per token: the bar advances by one token, or to the seconds of music the slowest row has."""
    if duration.steps_needed is None:
        return lambda steps: bar.update(1)

    def update(steps):
        seconds = round(float(steps.min()) * tokenizer.time_step, 1)
        bar.update(min(seconds, bar.total) - bar.n)

    return update


def _sample_transformers(model, tokenizer, settings, rows, constrained, stop_at_eos, target, duration, bar):
    """Windows of ``model.generate``, re-primed on the most recent tokens once the context is full."""
    context = model.config.n_positions
    grammar_offered = offers_grammar(tokenizer)
    device = next(model.parameters()).device
    finished = [False] * len(rows)
    while len(rows[0]) < target and not all(finished):
        # Re-prime on the most recent tokens once the context is full.
        keep = len(rows[0]) if len(rows[0]) < context else reprime_length(context)
        window = torch.tensor([row[-keep:] for row in rows], device=device)
        steps = min(target - len(rows[0]), context - keep)
        processors = _grammar(tokenizer, settings, rows, stop_at_eos) if constrained else None
        out = model.generate(
            window,
            attention_mask=torch.ones_like(window),
            max_new_tokens=steps,
            # The grammar processor already masks <eos>; transformers' own mask costs two more.
            min_new_tokens=None if stop_at_eos or constrained else steps,
            logits_processor=processors,
            # Without the grammar processor, <pad>/<bos> must still never be sampled mid-piece.
            suppress_tokens=[tokenizer.pad_token_id, tokenizer.bos_token_id] if not grammar_offered else None,
            stopping_criteria=duration.criteria(rows, window.shape[1], device),
            streamer=None if bar is None else duration.streamer(bar, rows),
            **_sampling_kwargs(settings, tokenizer),
        )
        _extend_rows(rows, finished, out[:, window.shape[1] :], steps, tokenizer)


def _grammar(tokenizer, settings: dict, rows, stop_at_eos: bool) -> LogitsProcessorList:
    """The grammar processor for one window, its state read from the rows so far."""
    grammar = PerformanceGrammarLogitsProcessor(
        tokenizer, max_polyphony=settings["max_polyphony"], allow_eos=stop_at_eos, history=rows,
        max_silence_seconds=settings["max_silence_seconds"], max_note_seconds=settings["max_note_seconds"],
        soft_note_seconds=settings["soft_note_seconds"], pitch_temperature=settings["pitch_temperature"],
        repeat_penalty=settings["repeat_penalty"],
    )  # fmt: skip
    return LogitsProcessorList([grammar])


def _sampling_kwargs(settings: dict, tokenizer) -> dict:
    """model.generate's sampling arguments from `sampling_settings` (0 / 1.0 turn top-k / top-p off)."""
    return {
        "do_sample": True,
        "temperature": float(settings["temperature"]),
        "top_k": int(settings["top_k"] or 0),
        "top_p": float(settings["top_p"] if settings["top_p"] is not None else 1.0),
        "min_p": settings["min_p"],
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }


class _Duration:
    """--max_seconds: how long the new music must last, counted in clock (TIME_SHIFT) steps for a
    vocabulary with a clock in its ids (`time_step`), by decoding for one without (miditok's)."""

    def __init__(self, tokenizer, prompt_ids, start: int, max_seconds: float | None):
        self.tokenizer, self.start, self.max_seconds = tokenizer, start, max_seconds
        self.steps_needed = None  # TIME_SHIFT steps of new music, performance vocabulary only
        self.prompt_seconds = 0.0  # music already in the prompt, miditok vocabularies only
        if max_seconds is not None and tokenizer.time_step is not None:
            self.steps_needed = max(1, round(max_seconds * 1000 / tokenizer.time_resolution_ms))
        elif max_seconds is not None:
            self.prompt_seconds = tokenizer.seconds(prompt_ids)

    def steps_done(self, rows) -> torch.Tensor:
        return time_steps(torch.tensor([row[self.start :] for row in rows]), self.tokenizer)

    def criteria(self, rows, window_length: int, device) -> StoppingCriteriaList:
        criteria = StoppingCriteriaList()
        if self.steps_needed is not None:
            done = self.steps_done(rows).to(device)
            criteria.append(_DurationCriteria(self.tokenizer, window_length, done, self.steps_needed))
        elif self.max_seconds is not None:
            criteria.append(
                _DecodedDurationCriteria(
                    self.tokenizer, rows, window_length, self.prompt_seconds, self.max_seconds
                )
            )
        return criteria

    def streamer(self, bar, rows) -> _ProgressStreamer:
        """Advances the bar by seconds of music when they are counted, else by tokens."""
        if self.steps_needed is None:
            return _ProgressStreamer(bar, None, None)
        return _ProgressStreamer(bar, self.tokenizer, self.steps_done(rows))


def _progress_bar(max_new_tokens: int, duration: _Duration):
    from tqdm.auto import tqdm

    if duration.steps_needed is None:
        return tqdm(total=max_new_tokens, unit="tok", desc="generating")
    return tqdm(
        total=float(duration.max_seconds), unit="s", desc="seconds of music",
        bar_format="{l_bar}{bar}| {n:.1f}/{total:.0f} s [{elapsed}<{remaining}]",
    )  # fmt: skip


def _extend_rows(rows, finished, new: torch.Tensor, steps: int, tokenizer) -> None:
    """Append one window's new tokens; a row that ended (<eos>, or its duration: generate pads
    after it) is marked finished and padded from then on, so the rows stay aligned."""
    if new.shape[1] < steps:  # every row stopped early
        new = torch.nn.functional.pad(new, (0, steps - new.shape[1]), value=tokenizer.pad_token_id)
    for i, tokens in enumerate(new.tolist()):
        if finished[i]:
            tokens = [tokenizer.pad_token_id] * len(tokens)
        elif tokenizer.eos_token_id in tokens or tokenizer.pad_token_id in tokens:
            finished[i] = True
        rows[i].extend(tokens)


def _trimmed(rows, start: int, target: int, tokenizer) -> list[list[int]]:
    """Each row cut after its <eos> or its last event (rows that finished early were padded)."""
    result = []
    for row in rows:
        if tokenizer.eos_token_id in row:
            row = row[: row.index(tokenizer.eos_token_id) + 1]
        while len(row) > start and row[-1] == tokenizer.pad_token_id:
            row.pop()
        result.append(row[:target])
    return result


CONTINUATION_MARKER = "hf_music: new music starts here"


def mark_continuation(score, seconds: float):
    """The score (in seconds) with a MIDI marker where the new music starts after the prompt."""
    import symusic

    timed = score.to("second")
    timed.markers.append(symusic.TextMeta(seconds, CONTINUATION_MARKER, ttype="second"))
    return timed


def generate_midi(model=None, tokenizer: MidiTokenizer | None = None, **sampling):
    """Sample music and return ``symusic.Score`` objects (a list when ``num_return_sequences > 1``).

    ``model`` and ``tokenizer`` default to the embedded model; every other keyword argument is
    one of `generate_ids` (prompt, max_new_tokens, max_seconds, temperature, top_k, top_p,
    min_p, seed, num_return_sequences, constrained, ...).
    """
    if model is None or tokenizer is None:
        from .resources import load_default_model

        default_model, default_tokenizer = load_default_model()
        model = model if model is not None else default_model
        tokenizer = tokenizer if tokenizer is not None else default_tokenizer
    rows = generate_ids(model, tokenizer, **sampling)
    scores = [tokenizer.decode_midi(row) for row in rows]
    return scores if sampling.get("num_return_sequences", 1) > 1 else scores[0]


__all__ = [
    "CONTINUATION_MARKER",
    "PerformanceGrammarLogitsProcessor",
    "generate_ids",
    "generate_midi",
    "grammar_violations",
    "mark_continuation",
    "prompt_to_ids",
    "sounding_clock",
    "sounding_pitches",
    "time_steps",
]
