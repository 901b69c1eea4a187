"""Sampling music: `generate_midi`, the grammar-aware LogitsProcessor and the sliding window.

Generation runs through ``model.generate`` (KV cache, transformers' temperature / top-k /
top-p / min-p warpers). Pieces longer than the model's context continue with a sliding
window: the most recent half of the context re-primes the model, and the grammar state
(which pitches are sounding) is carried over from the whole history.
"""

from __future__ import annotations

import numpy as np
import torch
from transformers import LogitsProcessor, LogitsProcessorList, StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

from .tokenization_music_transformer import NUM_PITCHES, MidiTokenizer, PerformanceNotes


def sounding_pitches(ids, tokenizer: MidiTokenizer) -> np.ndarray:
    """Boolean mask of the 128 pitches still sounding after the id sequence (decoder's rules)."""
    _, pitch, is_on = tokenizer.note_events(ids)
    sounding = np.zeros(NUM_PITCHES, bool)
    # The last event of each pitch decides: first occurrences in the reversed sequence.
    pitches, last_from_end = np.unique(pitch[::-1], return_index=True)
    sounding[pitches] = is_on[::-1][last_from_end]
    return sounding


def sounding_clock(ids, tokenizer: MidiTokenizer) -> tuple[np.ndarray, int]:
    """Steps each pitch has sounded, and steps of silence, at the end of an id sequence.

    Returns (held [NUM_PITCHES] int64: steps since each sounding pitch was struck, 0 for silent
    pitches; silent: steps since the last note event when nothing sounds, else 0).
    """
    ids = np.asarray(ids, dtype=np.int64).ravel()
    shift = ids - tokenizer.time_shift_offset
    steps = np.cumsum(np.where((shift >= 0) & (shift < tokenizer.max_time_shift), shift + 1, 0))
    now = int(steps[-1]) if len(steps) else 0
    pos, pitch, is_on = tokenizer.note_events(ids)
    struck = np.zeros(NUM_PITCHES, np.int64)
    np.maximum.at(struck, pitch[is_on], steps[pos[is_on]])  # times never decrease: the last strike
    sounding = sounding_pitches(ids, tokenizer)
    held = np.where(sounding, now - struck, 0)
    silent = 0 if sounding.any() else now - (int(steps[pos[-1]]) if len(pos) else 0)
    return held, silent


def grammar_violations(ids, tokenizer: MidiTokenizer) -> int:
    """Number of ill-formed events: NOTE_OFF of a silent pitch, NOTE_ON of a sounding pitch,
    and <pad>/<bos> after the first token. The decoder tolerates them; a good model avoids them."""
    ids = np.asarray(ids, dtype=np.int64).ravel()
    events, pitch, is_on = tokenizer.note_events(ids)
    order = np.lexsort((events, pitch))
    pitch, on = pitch[order], is_on[order]
    first_of_pitch = np.r_[True, pitch[1:] != pitch[:-1]]
    previous_on = np.r_[False, on[:-1]] & ~first_of_pitch
    bad_events = int(np.count_nonzero(on & previous_on) + np.count_nonzero(~on & ~previous_on))
    misplaced = np.isin(ids[1:], [tokenizer.pad_token_id, tokenizer.bos_token_id])
    return bad_events + int(np.count_nonzero(misplaced))


class PerformanceGrammarLogitsProcessor(LogitsProcessor):
    """Masks events that make no sense given the pitches sounding now.

    Forbids NOTE_OFF of a silent pitch and NOTE_ON of a sounding pitch, every NOTE_ON once
    ``max_polyphony`` pitches sound, TIME_SHIFTs that would stretch a silence (no pitch
    sounding) past ``max_silence_seconds``, <pad>, <bos> and ids past the tokenizer's vocabulary
    always, and <eos> unless ``allow_eos``. A note held ``max_note_seconds`` is released: only
    the NOTE_OFFs of such notes are allowed until they are all off. Both clocks run on from the
    prompt (or the earlier windows). Why the limits: MAESTRO pieces open with about a second of
    silence, so at low temperatures a model kept choosing the longest TIME_SHIFT and never played
    (T=0.5: 5 s of nothing for 3 seeds of 3), or held one key for ever (0.1% of MAESTRO's notes
    last over 8.45 s).
    The probability of a forbidden NOTE_OFF (NOTE_ON) moves to the allowed ones of that type, so
    the model's rate of releases (strikes) is kept; it is dropped only when none is allowed.
    The state of each row starts from ``history`` (full id rows, for a sliding window) or from
    the first ``input_ids`` it sees, and is then updated with one token per step.
    """

    def __init__(
        self,
        tokenizer: MidiTokenizer,
        max_polyphony: int | None = 16,
        allow_eos: bool = False,
        history: list[list[int]] | None = None,
        max_silence_seconds: float | None = 2.0,
        max_note_seconds: float | None = 8.0,
    ):
        self.tok = tokenizer
        self.max_polyphony = max_polyphony
        step = tokenizer.time_step
        self.max_silence = None if max_silence_seconds is None else round(max_silence_seconds / step)
        self.max_note = None if max_note_seconds is None else round(max_note_seconds / step)
        self.allow_eos = allow_eos
        self.history = history
        self.state: torch.Tensor | None = None  # (batch, NUM_PITCHES + 1) bool: sounding pitches
        self.rows = self.pitch_of = self.starts = self.never = self.shift_of = self.silent = None
        self.now = self.struck = None  # (batch,) steps so far; (batch, NUM_PITCHES + 1) step of each strike
        self.seen = 0

    def _start(self, input_ids: torch.LongTensor, vocab_size: int) -> None:
        tok, device = self.tok, input_ids.device
        # Per id (a model's vocabulary may be padded past the tokenizer's): the pitch it starts or
        # ends, column NUM_PITCHES (scratch) for other ids, and whether it starts one. One step's
        # update is then two lookups and a store.
        size = max(vocab_size, len(tok))
        ids, pitch, is_on = tok.note_events(np.arange(size))
        pitch_of, starts = np.full(size, NUM_PITCHES), np.zeros(size, bool)
        pitch_of[ids], starts[ids] = pitch, is_on
        shift_of = np.zeros(size, np.int64)  # steps each TIME_SHIFT id advances, 0 for other ids
        shift_of[tok.time_shift_offset : tok.velocity_offset] = np.arange(1, tok.max_time_shift + 1)
        self.pitch_of, self.starts, self.shift_of = (
            torch.from_numpy(pitch_of).to(device),
            torch.from_numpy(starts).to(device),
            torch.from_numpy(shift_of).to(device),
        )
        never = [tok.pad_token_id, tok.bos_token_id] + ([] if self.allow_eos else [tok.eos_token_id])
        self.never = torch.tensor(never, device=device)  # on the device: no copy per step
        rows = self.history if self.history is not None else input_ids.tolist()
        if len(rows) != input_ids.shape[0]:  # num_return_sequences expands the batch
            rows = [rows[i * len(rows) // input_ids.shape[0]] for i in range(input_ids.shape[0])]
        state = np.zeros((len(rows), NUM_PITCHES + 1), bool)
        state[:, :NUM_PITCHES] = [sounding_pitches(row, self.tok) for row in rows]
        self.state = torch.from_numpy(state).to(device)
        # The clocks go on from the prompt (or the earlier windows): times relative to now = 0.
        clocks = [sounding_clock(row, self.tok) for row in rows]
        struck = np.zeros(state.shape, np.int64)
        struck[:, :NUM_PITCHES] = [-held for held, _ in clocks]
        self.struck = torch.from_numpy(struck).to(device)
        self.silent = torch.tensor([silent for _, silent in clocks], dtype=torch.long, device=device)
        self.now = torch.zeros_like(self.silent)
        self.rows = torch.arange(input_ids.shape[0], device=device)
        self.seen = input_ids.shape[1]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.state is None:
            self._start(input_ids, scores.shape[-1])
        for column in range(self.seen, input_ids.shape[1]):
            token = input_ids[:, column]
            self.state[self.rows, self.pitch_of[token]] = self.starts[token]
            self.now += self.shift_of[token]
            self.struck[self.rows, self.pitch_of[token]] = self.now
            quiet = ~self.state[:, :NUM_PITCHES].any(dim=1)
            self.silent = torch.where(self.starts[token], 0, self.silent + self.shift_of[token] * quiet)
        self.seen = input_ids.shape[1]
        sounding = self.state[:, :NUM_PITCHES]
        strike_blocked = sounding
        if self.max_polyphony is not None:
            strike_blocked = sounding | (sounding.sum(dim=1, keepdim=True) >= self.max_polyphony)
        # NOTE_ON and NOTE_OFF ids are one block: view them as (batch, 2 event types, 128 pitches).
        first, last = self.tok.note_on_offset, self.tok.time_shift_offset
        notes = scores[:, first:last].view(-1, 2, NUM_PITCHES)
        allowed = notes.masked_fill(torch.stack((strike_blocked, ~sounding), dim=1), float("-inf"))
        # Keep the model's odds of each event type: the mass of a blocked NOTE_OFF (or NOTE_ON) goes
        # to the allowed events of the same type. A small model that means "release a key" but
        # names a silent one then still releases one, instead of holding every note longer.
        total = torch.logsumexp(notes, dim=2, keepdim=True)
        kept = torch.logsumexp(allowed, dim=2, keepdim=True)
        shift = torch.where(kept > float("-inf"), total - kept, 0.0)
        out = scores.clone()
        out[:, first:last] = (allowed + shift).view(-1, 2 * NUM_PITCHES)
        out[:, self.never] = float("-inf")
        out[:, len(self.tok) :] = float("-inf")  # ids of a padded vocabulary mean nothing
        self._limit_time_shifts(out, sounding)
        return out

    def _limit_time_shifts(self, out: torch.Tensor, sounding: torch.Tensor) -> None:
        """No TIME_SHIFT may carry a silence or a held note past its limit; overlong notes are released."""
        if self.max_silence is None and self.max_note is None:
            return
        budget = torch.full_like(self.now, torch.iinfo(torch.long).max)
        if self.max_silence is not None:
            budget = torch.where(sounding.any(dim=1), budget, self.max_silence - self.silent)
        if self.max_note is not None:
            held = (self.now[:, None] - self.struck[:, :NUM_PITCHES]).masked_fill(~sounding, 0)
            budget = torch.minimum(budget, self.max_note - held.max(dim=1).values)
        first, last = self.tok.time_shift_offset, self.tok.velocity_offset
        out[:, first:last] = out[:, first:last].masked_fill(
            self.shift_of[first:last] > budget[:, None], float("-inf")
        )
        if self.max_note is not None:
            self._release_overlong(out, sounding & (held >= self.max_note), self.tok.note_off_offset, first)

    @staticmethod
    def _release_overlong(out: torch.Tensor, overlong: torch.Tensor, first: int, last: int) -> None:
        """Rows holding notes for max_note steps may only release them (in the model's odds)."""
        rows = overlong.any(dim=1)
        if not rows.any():
            return
        offs = out[rows, first:last].masked_fill(~overlong[rows], float("-inf"))
        # A row whose model gives every overlong NOTE_OFF zero probability releases them evenly.
        evenly = torch.zeros_like(offs).masked_fill(~overlong[rows], float("-inf"))
        offs = torch.where(torch.isinf(offs).all(dim=1, keepdim=True), evenly, offs)
        out[rows] = float("-inf")
        out[rows, first:last] = offs


def time_steps(ids: torch.Tensor, tokenizer: MidiTokenizer) -> torch.Tensor:
    """Per row, the time the TIME_SHIFT events of `ids` advance, in steps of time_resolution_ms."""
    shift = ids - tokenizer.time_shift_offset
    is_shift = (shift >= 0) & (shift < tokenizer.max_time_shift)
    return torch.where(is_shift, shift + 1, 0).sum(dim=-1)


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
    elif is_miditok(tokenizer):
        ids = tokenizer.encode_midi(prompt, add_special_tokens=False, max_seconds=prompt_seconds, name=name)
    else:
        notes = tokenizer.midi_to_notes(prompt, name=name)
        if prompt_seconds is not None:
            keep = notes.onset < prompt_seconds
            notes = PerformanceNotes(
                notes.onset[keep],
                np.minimum(notes.offset[keep], prompt_seconds),
                notes.pitch[keep],
                notes.velocity[keep],
            )
        ids = tokenizer.encode_notes(notes, add_special_tokens=False).tolist()
    while ids and ids[-1] in (tokenizer.eos_token_id, tokenizer.pad_token_id):
        ids.pop()
    if not ids or ids[0] != tokenizer.bos_token_id:
        ids.insert(0, tokenizer.bos_token_id)
    return ids


def is_miditok(tokenizer) -> bool:
    """A miditok vocabulary (`MiditokTokenizer`): no performance grammar, no TIME_SHIFT clock."""
    return getattr(tokenizer, "is_miditok", False)


class _DecodedDurationCriteria(StoppingCriteria):
    """For a miditok vocabulary: every ``every`` tokens, decode each row and stop those whose new music
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
    "max_polyphony": 16,
    "max_silence_seconds": 2.0,
    "max_note_seconds": 8.0,
}


def sampling_settings(model, **given) -> dict:
    """Sampling settings: the caller's, else the model's generation_config, else SAMPLING_DEFAULTS.

    None from the caller means "off" for the limits (max_polyphony, max_silence_seconds,
    max_note_seconds) and "not given" for temperature / top_k / top_p / min_p, as in
    transformers; top_k 0 and top_p 1.0 mean off.
    """
    config = getattr(model, "generation_config", None)
    settings = {}
    for name, default in SAMPLING_DEFAULTS.items():
        value = given.get(name, UNSET)
        is_limit = name.startswith("max_")
        if value is UNSET or (value is None and not is_limit):
            value = getattr(config, name, None) if config is not None else None
            value = default if value is None and (is_limit or name == "temperature") else value
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
    top_k: int | None = None,
    top_p: float | None = None,
    min_p: float | None = None,
    seed: int | None = None,
    num_return_sequences: int = 1,
    constrained: bool = True,
    max_polyphony: int | None = UNSET,
    max_silence_seconds: float | None = UNSET,
    max_note_seconds: float | None = UNSET,
    stop_at_eos: bool = False,
    max_seconds: float | None = None,
    progress: bool = False,
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
        stop_at_eos: stop a sequence at <eos>; by default <eos> is masked so every piece has
            the requested length.
        max_seconds: stop a sequence once its new music lasts this long (``max_new_tokens``
            stays the hard cap; dense music needs about 40 events per second).
        progress: show a tqdm progress bar.
    """
    settings = sampling_settings(
        model, temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p, max_polyphony=max_polyphony,
        max_silence_seconds=max_silence_seconds, max_note_seconds=max_note_seconds,
    )  # fmt: skip
    temperature, top_k, top_p, min_p = (settings[k] for k in ("temperature", "top_k", "top_p", "min_p"))
    max_polyphony, max_silence_seconds, max_note_seconds = (
        settings[k] for k in ("max_polyphony", "max_silence_seconds", "max_note_seconds")
    )
    if not temperature > 0:
        raise ValueError(
            f"temperature must be > 0, got {temperature} (use a small value such as 0.1 for near-greedy)"
        )
    if max_new_tokens < 1 or num_return_sequences < 1:
        raise ValueError("max_new_tokens and num_return_sequences must be >= 1")
    context = model.config.n_positions
    miditok_vocabulary = is_miditok(tokenizer)
    constrained = constrained and not miditok_vocabulary  # the grammar is the performance vocabulary's
    prompt_ids = prompt_to_ids(prompt, tokenizer, prompt_seconds)
    rows = [list(prompt_ids) for _ in range(num_return_sequences)]
    target = len(rows[0]) + max_new_tokens
    start = len(rows[0])
    needed = None
    if max_seconds is not None and not miditok_vocabulary:
        needed = max(1, round(max_seconds * 1000 / tokenizer.time_resolution_ms))
    prompt_music = tokenizer.seconds(prompt_ids) if miditok_vocabulary and max_seconds is not None else 0.0
    device = next(model.parameters()).device
    finished = [False] * num_return_sequences
    bar = None
    if progress:
        from tqdm.auto import tqdm

        if needed is None:
            bar = tqdm(total=max_new_tokens, unit="tok", desc="generating")
        else:
            bar = tqdm(
                total=float(max_seconds),
                unit="s",
                desc="seconds of music",
                bar_format="{l_bar}{bar}| {n:.1f}/{total:.0f} s [{elapsed}<{remaining}]",
            )
    was_training = model.training
    model.eval()
    rng_devices = [device] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=rng_devices, enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            while len(rows[0]) < target and not all(finished):
                # Re-prime on the most recent half of the context once the context is full.
                keep = len(rows[0]) if len(rows[0]) < context else context // 2
                window = torch.tensor([row[-keep:] for row in rows], device=device)
                steps = min(target - len(rows[0]), context - keep)
                criteria = StoppingCriteriaList()
                if needed is not None:
                    done = time_steps(torch.tensor([row[start:] for row in rows]), tokenizer).to(device)
                    criteria.append(_DurationCriteria(tokenizer, window.shape[1], done, needed))
                elif miditok_vocabulary and max_seconds is not None:
                    criteria.append(
                        _DecodedDurationCriteria(tokenizer, rows, window.shape[1], prompt_music, max_seconds)
                    )
                processors = LogitsProcessorList()
                if constrained:
                    processors.append(
                        PerformanceGrammarLogitsProcessor(
                            tokenizer,
                            max_polyphony=max_polyphony,
                            allow_eos=stop_at_eos,
                            history=rows,
                            max_silence_seconds=max_silence_seconds,
                            max_note_seconds=max_note_seconds,
                        )
                    )
                out = model.generate(
                    window,
                    attention_mask=torch.ones_like(window),
                    max_new_tokens=steps,
                    # The grammar processor already masks <eos>; transformers' own mask costs two more.
                    min_new_tokens=None if stop_at_eos or constrained else steps,
                    do_sample=True,
                    temperature=float(temperature),
                    top_k=int(top_k or 0),
                    top_p=float(top_p if top_p is not None else 1.0),
                    min_p=min_p,
                    logits_processor=processors,
                    # Without the grammar processor, <pad>/<bos> must still never be sampled mid-piece.
                    suppress_tokens=[tokenizer.pad_token_id, tokenizer.bos_token_id]
                    if miditok_vocabulary
                    else None,
                    stopping_criteria=criteria,
                    pad_token_id=tokenizer.pad_token_id,
                    eos_token_id=tokenizer.eos_token_id,
                    streamer=None
                    if bar is None
                    else _ProgressStreamer(
                        bar,
                        tokenizer if needed is not None else None,
                        None
                        if needed is None
                        else time_steps(torch.tensor([row[start:] for row in rows]), tokenizer),
                    ),
                )
                new = out[:, window.shape[1] :]
                if new.shape[1] < steps:  # every row stopped early: pad to keep the rows aligned
                    new = torch.nn.functional.pad(
                        new, (0, steps - new.shape[1]), value=tokenizer.pad_token_id
                    )
                for i, tokens in enumerate(new.tolist()):
                    if finished[i]:
                        tokens = [tokenizer.pad_token_id] * len(tokens)
                    elif tokenizer.eos_token_id in tokens or tokenizer.pad_token_id in tokens:
                        finished[i] = True  # <eos>, or the duration was reached (generate pads after)
                    rows[i].extend(tokens)
    finally:
        if bar is not None:
            bar.close()
        model.train(was_training)
    # Cut each row after its <eos> or its last event (rows that finished early were padded).
    result = []
    for row in rows:
        if tokenizer.eos_token_id in row:
            row = row[: row.index(tokenizer.eos_token_id) + 1]
        while len(row) > start and row[-1] == tokenizer.pad_token_id:
            row.pop()
        result.append(row[:target])
    return result


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
    "PerformanceGrammarLogitsProcessor",
    "generate_ids",
    "generate_midi",
    "grammar_violations",
    "prompt_to_ids",
    "sounding_pitches",
    "time_steps",
]
