"""Grammar-aware sampling over performance events: the LogitsProcessor and a `generate` for the Hub.

This module is self-contained (numpy, torch and transformers only, no hf_music): when a checkpoint
is saved it is copied verbatim into ``custom_generate/generate.py``, so that Hub users without
hf_music sample with the same grammar. transformers 5 runs it in place of ``model.generate`` when
the model is loaded with ``trust_remote_code=True`` from a folder or repo that carries it, or when
asked for: ``model.generate(ids, custom_generate=folder_or_repo, trust_remote_code=True)``.

The vocabulary is read from the token names (``NOTE_ON_p``, ``NOTE_OFF_p``, ``TIME_SHIFT_k``,
``VELOCITY_b``, ``<pad> <bos> <eos>``, and merged BPE tokens named by their events joined with
``+``), so any tokenizer of the checkpoint serves: hf_music's MidiTokenizer or the fast tokenizer
that plain ``AutoTokenizer`` loads from tokenizer.json.
"""

from __future__ import annotations

import functools
import logging
from typing import NamedTuple

import numpy as np
import torch
from transformers import GenerationMixin, LogitsProcessor, LogitsProcessorList

NUM_PITCHES = 128
MERGE_SEPARATOR = "+"  # a merged (BPE) token's name: its events' names joined with this
# How fast the odds of releasing a note held past soft_note_seconds grow: e-fold every quarter second
# (with the soft limit at 2 s, the embedded model held 0.51% of its notes >= 4 s, MAESTRO test 0.49%).
RELEASE_NATS_PER_SECOND = 4.0
NO_LIMIT = np.iinfo(np.int64).max
logger = logging.getLogger(__name__)


class EventLayout(NamedTuple):
    """Where the performance events sit in a vocabulary (four contiguous blocks, as MidiTokenizer's)."""

    note_on_offset: int
    note_off_offset: int
    time_shift_offset: int
    velocity_offset: int
    max_time_shift: int
    time_step: float  # seconds per TIME_SHIFT step
    pad_token_id: int
    bos_token_id: int
    eos_token_id: int
    size: int  # ids in the vocabulary
    merged: tuple[tuple[int, ...], ...] = ()  # base ids of each merged (BPE) token, the last ids

    @property
    def base_size(self) -> int:
        return self.size - len(self.merged)

    def base_ids(self, ids) -> np.ndarray:
        """The events of an id sequence, merged tokens expanded (ids past the vocabulary dropped)."""
        ids = np.asarray(ids, dtype=np.int64).ravel()
        if not self.merged:
            return ids
        ids = ids[(ids >= 0) & (ids < self.size)]
        flat, start = _ragged(self)
        lengths = start[ids + 1] - start[ids]
        first = np.repeat(np.cumsum(lengths) - lengths, lengths)
        return flat[np.repeat(start[ids], lengths) + np.arange(int(lengths.sum())) - first]

    @classmethod
    def of(cls, tokenizer) -> EventLayout:
        """The layout of a tokenizer (slow or fast; an EventLayout is returned as it is)."""
        if isinstance(tokenizer, EventLayout):
            return tokenizer
        resolution_ms = getattr(tokenizer, "time_resolution_ms", None)
        if resolution_ms is None:  # a fast tokenizer keeps tokenizer_config.json's fields here
            resolution_ms = getattr(tokenizer, "init_kwargs", {}).get("time_resolution_ms", 10)
        return cls.from_vocab(tokenizer.get_vocab(), resolution_ms / 1000.0)

    @classmethod
    def from_vocab(cls, vocab: dict[str, int], time_step: float) -> EventLayout:
        def block(prefix: str, first: int) -> tuple[int, int]:
            ids = [vocab.get(f"{prefix}{k}") for k in range(first, first + len(vocab))]
            count = ids.index(None) if None in ids else len(ids)
            if count == 0 or ids[:count] != list(range(ids[0], ids[0] + count)):
                raise ValueError(f"not a performance-event vocabulary: no contiguous {prefix}* block")
            return ids[0], count

        note_on, pitches = block("NOTE_ON_", 0)
        note_off, _ = block("NOTE_OFF_", 0)
        shift, max_shift = block("TIME_SHIFT_", 1)
        velocity, _ = block("VELOCITY_", 0)
        if pitches != NUM_PITCHES or note_off != note_on + NUM_PITCHES or shift != note_off + NUM_PITCHES:
            raise ValueError("not a performance-event vocabulary: NOTE_ON, NOTE_OFF, TIME_SHIFT out of order")
        specials = [vocab.get(name) for name in ("<pad>", "<bos>", "<eos>")]
        if None in specials:
            raise ValueError("not a performance-event vocabulary: it needs <pad>, <bos> and <eos>")
        merged = sorted((i, name) for name, i in vocab.items() if MERGE_SEPARATOR in name)
        if [i for i, _ in merged] != list(range(len(vocab) - len(merged), len(vocab))):
            raise ValueError("not a performance-event vocabulary: merged tokens must be its last ids")
        try:
            expansions = tuple(
                tuple(vocab[event] for event in name.split(MERGE_SEPARATOR)) for _, name in merged
            )
        except KeyError as missing:
            raise ValueError(
                f"not a performance-event vocabulary: merged token of unknown event {missing}"
            ) from None
        return cls(
            note_on, note_off, shift, velocity, max_shift, time_step, *specials, len(vocab), expansions
        )

    def note_events(self, ids) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Positions, pitches and is-NOTE_ON flags of the NOTE_ON / NOTE_OFF events in an id sequence."""
        ids = np.asarray(ids, dtype=np.int64).ravel()
        pos = np.flatnonzero((ids >= self.note_on_offset) & (ids < self.time_shift_offset))
        return pos, (ids[pos] - self.note_on_offset) % NUM_PITCHES, ids[pos] < self.note_off_offset


@functools.lru_cache(maxsize=8)
def _ragged(layout: EventLayout) -> tuple[np.ndarray, np.ndarray]:
    """Every id's events back to back, and where each id's start (length size + 1)."""
    expansions = [(i,) for i in range(layout.base_size)] + list(layout.merged)
    start = np.concatenate(([0], np.cumsum([len(e) for e in expansions]))).astype(np.int64)
    return np.fromiter((i for e in expansions for i in e), np.int64, int(start[-1])), start


def sounding_pitches(ids, tokenizer) -> np.ndarray:
    """Boolean mask of the 128 pitches still sounding after the id sequence (decoder's rules)."""
    layout = EventLayout.of(tokenizer)
    _, pitch, is_on = layout.note_events(layout.base_ids(ids))
    sounding = np.zeros(NUM_PITCHES, bool)
    # The last event of each pitch decides: first occurrences in the reversed sequence.
    pitches, last_from_end = np.unique(pitch[::-1], return_index=True)
    sounding[pitches] = is_on[::-1][last_from_end]
    return sounding


def sounding_clock(ids, tokenizer) -> tuple[np.ndarray, int]:
    """Steps each pitch has sounded, and steps of silence, at the end of an id sequence.

    Returns (held [NUM_PITCHES] int64: steps since each sounding pitch was struck, 0 for silent
    pitches; silent: steps since the last note event when nothing sounds, else 0).
    """
    layout = EventLayout.of(tokenizer)
    ids = layout.base_ids(ids)
    shift = ids - layout.time_shift_offset
    steps = np.cumsum(np.where((shift >= 0) & (shift < layout.max_time_shift), shift + 1, 0))
    now = int(steps[-1]) if len(steps) else 0
    pos, pitch, is_on = layout.note_events(ids)
    struck = np.zeros(NUM_PITCHES, np.int64)
    np.maximum.at(struck, pitch[is_on], steps[pos[is_on]])  # times never decrease: the last strike
    sounding = sounding_pitches(ids, layout)
    held = np.where(sounding, now - struck, 0)
    silent = 0 if sounding.any() else now - (int(steps[pos[-1]]) if len(pos) else 0)
    return held, silent


def strike_run(ids, tokenizer) -> tuple[int, int]:
    """(pitch struck last, strikes of it in a row at the end) of an id sequence; (-1, 0) without strikes."""
    layout = EventLayout.of(tokenizer)
    _, pitch, is_on = layout.note_events(layout.base_ids(ids))
    strikes = pitch[is_on]
    if not len(strikes):
        return -1, 0
    others = np.flatnonzero(strikes != strikes[-1])
    return int(strikes[-1]), int(len(strikes) - (others[-1] + 1 if len(others) else 0))


def grammar_violations(ids, tokenizer) -> int:
    """Number of ill-formed events: NOTE_OFF of a silent pitch, NOTE_ON of a sounding pitch,
    and <pad>/<bos> after the first token. The decoder tolerates them; a good model avoids them."""
    layout = EventLayout.of(tokenizer)
    ids = layout.base_ids(ids)
    events, pitch, is_on = layout.note_events(ids)
    order = np.lexsort((events, pitch))
    pitch, on = pitch[order], is_on[order]
    first_of_pitch = np.r_[True, pitch[1:] != pitch[:-1]]
    previous_on = np.r_[False, on[:-1]] & ~first_of_pitch
    bad_events = int(np.count_nonzero(on & previous_on) + np.count_nonzero(~on & ~previous_on))
    misplaced = np.isin(ids[1:], [layout.pad_token_id, layout.bos_token_id])
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
    Three soft rules shape the music without forbidding anything: past ``soft_note_seconds`` a held
    note's NOTE_OFF gains RELEASE_NATS_PER_SECOND of log-odds per second; ``repeat_penalty`` makes
    striking the pitch just struck again cost nats per strike in the run; ``pitch_temperature``
    tempers which pitch a NOTE_ON strikes. The last two leave the odds of striking, releasing,
    waiting and dynamics as the model gives them (merged BPE tokens are left to the model by all three).
    The state of each row starts from ``history`` (full id rows, for a sliding window) or from
    the first ``input_ids`` it sees, and is then updated with one token per step.
    """

    def __init__(
        self,
        tokenizer,
        max_polyphony: int | None = 16,
        allow_eos: bool = False,
        history: list[list[int]] | None = None,
        max_silence_seconds: float | None = 2.0,
        max_note_seconds: float | None = 8.0,
        soft_note_seconds: float | None = None,
        pitch_temperature: float | None = None,
        repeat_penalty: float | None = None,
    ):
        self.tok = EventLayout.of(tokenizer)
        self.soft_note = None if soft_note_seconds is None else round(soft_note_seconds / self.tok.time_step)
        self.pitch_temperature = 1.0 if pitch_temperature is None else float(pitch_temperature)
        self.repeat_penalty = float(repeat_penalty or 0.0)
        if not self.pitch_temperature > 0:
            raise ValueError(f"pitch_temperature must be > 0, got {pitch_temperature}")
        self.max_polyphony = max_polyphony
        step = self.tok.time_step
        self.max_silence = None if max_silence_seconds is None else round(max_silence_seconds / step)
        self.max_note = None if max_note_seconds is None else round(max_note_seconds / step)
        self.allow_eos = allow_eos
        self.history = history
        # Each row's state lives on the host as numpy arrays: a step's update is a few table lookups,
        # and a small numpy op costs a fraction of a torch op's dispatch. Only the masks made from it
        # travel to the scores' device, once per step.
        self.sounding: np.ndarray | None = None  # (batch, NUM_PITCHES) bool: sounding pitches
        self.now = self.silent = None  # (batch,): steps so far; steps of silence (0 while a note sounds)
        self.struck = None  # (batch, NUM_PITCHES): step of each pitch's last strike (relative to now = 0)
        # (batch,): the pitch struck last (-1: none), and strikes of it in a row
        self.last_struck = self.run = None
        self.tables: IdTables | None = None
        self.merged = None  # the merged ids' tables on the scores' device (`_merged_blocked`)
        self.seen = 0

    def _start(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> None:
        batch, size = input_ids.shape[0], scores.shape[-1]
        rows = self.history if self.history is not None else input_ids.tolist()
        if len(rows) != batch:  # num_return_sequences expands the batch
            rows = [rows[i * len(rows) // batch] for i in range(batch)]
        sounding = [sounding_pitches(row, self.tok) for row in rows]
        self.sounding = np.array(sounding).reshape(batch, NUM_PITCHES)
        # The clocks go on from the prompt (or the earlier windows): times relative to now = 0.
        clocks = [sounding_clock(row, self.tok) for row in rows]
        self.struck = np.array([-held for held, _ in clocks], np.int64).reshape(batch, NUM_PITCHES)
        self.silent = np.array([silent for _, silent in clocks], np.int64)
        self.now = np.zeros_like(self.silent)
        runs = [strike_run(row, self.tok) for row in rows]
        self.last_struck = np.array([pitch for pitch, _ in runs], np.int64)
        self.run = np.array([run for _, run in runs], np.int64)
        self.seen = input_ids.shape[1]
        self._quiet = ~self.sounding.any(axis=1)
        self._notes_changed = True  # the NOTE_ON / NOTE_OFF masks are to be written
        self._prepare(batch, size, scores.device)
        self._price_repeats()

    def _prepare(self, batch: int, size: int, device: torch.device) -> None:
        """Tables and buffers made once: each step then does few and small ops."""
        # Per id (a model's vocabulary may be padded past the tokenizer's): the pitches it starts or
        # ends and which sound after it, whether it strikes a note, the steps it moves on.
        self.tables = _id_tables(self.tok, max(size, self.tok.size))
        self._touches = self.tables.touched.any(axis=1)
        pitch = np.arange(len(self.tables.shift)) - self.tok.note_on_offset
        strikes_one = (pitch >= 0) & (pitch < NUM_PITCHES)  # the NOTE_ON ids: runs are followed
        self._run_code = np.where(strikes_one, pitch, np.where(self.tables.strikes, -2, -1))
        # The ids forbidden now, over (the scores, the scores masked): `torch.where` makes both in one
        # op. The first row stays all False; the second starts with the ids never allowed (<pad>,
        # <bos>, <eos> unless allow_eos, and ids past the tokenizer's vocabulary, which mean nothing).
        self._forbid = np.zeros((2, batch, size), bool)
        never = [self.tok.pad_token_id, self.tok.bos_token_id] + (
            [] if self.allow_eos else [self.tok.eos_token_id]
        )
        self._forbid[1][:, never] = True
        self._forbid[1][:, self.tok.size :] = True
        self._forbid_tensor = torch.from_numpy(self._forbid)  # the same memory: no copy per step on CPU
        self._rows = np.arange(batch)
        self._cost = np.zeros((batch, NUM_PITCHES), np.float32)  # the repeat penalty of each pitch now
        self._cost_tensor = torch.from_numpy(self._cost)
        # Constants as 0-dim tensors: a Python number costs a conversion per op.
        self._minus_inf, self._inf, self._zero = (
            torch.tensor(x, device=device) for x in (-np.inf, np.inf, 0.0)
        )
        # On the CPU, as a float64 0-dim tensor: divides as the Python float does, without its conversion
        # per call; other devices (MPS has no float64) take the Python float.
        cpu = device.type == "cpu"
        self._divisor = (
            torch.tensor(self.pitch_temperature, dtype=torch.float64) if cpu else self.pitch_temperature
        )
        on, shifts = self.tok.note_on_offset, self.tok.time_shift_offset
        # (2, batch, 2 event types, 128 pitches) of the (2, batch, vocab) scores: one op per step
        self._notes_view = ((2, batch, 2, NUM_PITCHES), (batch * size, size, NUM_PITCHES, 1), on)
        self._shift_steps = self.tables.shift[shifts : self.tok.velocity_offset]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.sounding is None:
            self._start(input_ids, scores)
        if input_ids.shape[1] > self.seen:
            on_cpu = input_ids.device.type == "cpu"  # then no torch op: a numpy view of its new columns
            new = input_ids.numpy()[:, self.seen :] if on_cpu else input_ids[:, self.seen :].cpu().numpy()
            self._follow(new)
        self.seen = input_ids.shape[1]
        held = np.where(self.sounding, self.now[:, None] - self.struck, 0)  # steps each note has sounded
        longest = held.max(axis=1)
        oldest = longest.max()
        self._forbid_now(longest)
        forbid = self._forbid_tensor if scores.device.type == "cpu" else self._forbid_tensor.to(scores.device)
        both = torch.where(forbid, self._minus_inf, scores)  # (2, batch, vocab): the scores, and masked
        out = both[1]
        # NOTE_ON and NOTE_OFF ids are one block: view them as (batch, 2 event types, 128 pitches).
        # Keep the model's odds of each event type: the mass of a blocked NOTE_OFF (or NOTE_ON) goes
        # to the allowed events of the same type. A small model that means "release a key" but
        # names a silent one then still releases one, instead of holding every note longer.
        if both.is_contiguous():  # as torch.where makes it: the view in one op
            notes = both.as_strided(*self._notes_view)
        else:
            first, last = self.tok.note_on_offset, self.tok.time_shift_offset
            notes = both[:, :, first:last].view(2, -1, 2, NUM_PITCHES)
        total, kept = torch.logsumexp(notes, dim=3, keepdim=True).unbind(0)  # all, and the allowed
        allowed = notes[1]
        allowed += torch.where(kept > self._minus_inf, total - kept, self._zero)
        if self.soft_note is not None and oldest > self.soft_note:  # else no NOTE_OFF gains odds
            self._encourage_release(allowed[:, 1], held)  # out's NOTE_OFFs
        if self.max_note is not None and oldest >= self.max_note:
            overlong = torch.from_numpy(self.sounding & (held >= self.max_note)).to(out.device)
            self._release_overlong(
                out, overlong, self.tok.note_off_offset, self.tok.time_shift_offset, self.tok.base_size
            )
        if self.tok.merged:
            merged = out[:, self.tok.base_size : self.tok.size]
            merged.masked_fill_(self._merged_blocked(out.device), float("-inf"))
        if self.repeat_penalty or self.pitch_temperature != 1.0:
            self._shape_strikes(out, allowed)
        return out

    def _follow(self, tokens: np.ndarray) -> None:
        """Update the state with new columns of ids (batch, columns): a token's notes start together."""
        tables = self.tables
        for token in tokens.T:
            if self._touches[token].any():  # else the sounding pitches stay as they are
                final_on = tables.final_on[token]
                self.sounding = np.where(tables.touched[token], final_on, self.sounding)
                self.struck = np.where(final_on, self.now[:, None], self.struck)
                self._quiet = ~self.sounding.any(axis=1)  # its TIME_SHIFT (the last event) passes in silence
                self._notes_changed = True
            shift = tables.shift[token]
            self.now = self.now + shift
            self.silent = np.where(tables.strikes[token], 0, self.silent) + shift * self._quiet
            code = self._run_code[token]
            if (code != -1).any():
                self._count_run(code)

    def _count_run(self, code: np.ndarray) -> None:
        """Follow the run of strikes of one pitch: ``code`` is the pitch a token strikes (a NOTE_ON),
        -2 if it ends the run (a merged token's strikes: not followed inside), else -1."""
        follows = code != -1
        again = np.where(code == self.last_struck, self.run + 1, code >= 0)  # 1 for a new pitch, 0 at -2
        self.run = np.where(follows, again, self.run)
        self.last_struck = np.where(follows, np.maximum(code, -1), self.last_struck)
        self._price_repeats()

    def _price_repeats(self) -> None:
        """The cost of striking the pitch struck last again, by pitch (float32, as torch multiplies an int64
        tensor by a Python float; a row without a run costs 0)."""
        if self.repeat_penalty:
            self._cost[:] = 0
            cost = np.float32(self.repeat_penalty) * self.run.astype(np.float32) * (self.last_struck >= 0)
            self._cost[self._rows, np.maximum(self.last_struck, 0)] = cost

    def _forbid_now(self, longest: np.ndarray) -> None:
        """The masks that change with the state, written into their blocks of the forbidden ids: NOTE_ON of a
        sounding pitch (any, with max_polyphony sounding), NOTE_OFF of a silent one, TIME_SHIFTs too long."""
        forbid, sounding = self._forbid[1], self.sounding
        on, off, shifts, velocity = (
            self.tok.note_on_offset, self.tok.note_off_offset, self.tok.time_shift_offset, self.tok.velocity_offset,
        )  # fmt: skip
        if self._notes_changed:
            if self.max_polyphony is None:
                forbid[:, on:off] = sounding
            else:
                full = sounding.sum(axis=1, keepdims=True) >= self.max_polyphony
                np.logical_or(sounding, full, out=forbid[:, on:off])
            np.logical_not(sounding, out=forbid[:, off:shifts])
            self._notes_changed = False
        if self.max_silence is not None or self.max_note is not None:
            # No TIME_SHIFT may carry a silence or a held note past its limit.
            budget = (
                NO_LIMIT
                if self.max_silence is None
                else np.where(self._quiet, self.max_silence - self.silent, NO_LIMIT)
            )
            if self.max_note is not None:
                budget = np.minimum(budget, self.max_note - longest)
            np.greater(self._shift_steps, budget[:, None], out=forbid[:, shifts:velocity])

    def _encourage_release(self, offs: torch.Tensor, held: np.ndarray) -> None:
        """Past soft_note steps, a held note's NOTE_OFF gains RELEASE_NATS_PER_SECOND of log-odds per second.

        A small model forgets the notes it struck long ago (2.3% of the default model's notes ran into
        the 8 s cap at temperature 1.0, against 0.10% of MAESTRO's): its odds of releasing one rise with
        the note's age, so notes end on their own before the hard limit ends them all at once.
        """
        overdue = np.maximum(held - self.soft_note, 0)
        rate = RELEASE_NATS_PER_SECOND * self.tok.time_step
        if offs.dtype == torch.float32:  # the same float32 product as torch's (a tensor times a scalar)
            gain = torch.from_numpy(overdue.astype(np.float32) * np.float32(rate))
            offs += gain if offs.device.type == "cpu" else gain.to(offs.device)
        else:
            offs += torch.from_numpy(overdue).to(offs.device).to(offs.dtype) * rate

    def _shape_strikes(self, out: torch.Tensor, notes: torch.Tensor) -> None:
        """Which pitch a NOTE_ON strikes: the repeat penalty, then the pitch temperature; the NOTE_ONs keep
        their total probability, so when notes start, end and how loud stay as the model has them.

        Plain temperature below 1 also sharpened the TIME_SHIFTs and made music of few notes on one key
        (notes per second or a pitch's share out of MAESTRO's range in 7 of 24 samples at 0.7). And a
        small model, once it repeats a key, rates the next repeat likelier still: striking the pitch
        just struck costs repeat_penalty nats per strike of it in a row so far (runs of 5+ strikes,
        which 1% of MAESTRO test excerpts have, came in 4 of 24 samples at temperature 1.0).
        """
        strikes = notes[:, 0]  # out's NOTE_ONs
        shaped = strikes
        if self.repeat_penalty and self.run.any():  # else the cost is 0, and subtracting 0 changes nothing
            cost = self._cost_tensor
            if out.device.type != "cpu" or out.dtype != torch.float32:
                cost = cost.to(out.device, out.dtype)
            shaped = strikes - cost
        if self.pitch_temperature != 1.0:  # a division by 1 changes nothing
            shaped = shaped / self._divisor
        mass, norm = torch.logsumexp(torch.stack((strikes, shaped)), dim=2, keepdim=True).unbind(0)
        finite = mass.abs() < self._inf  # isfinite in fewer ops
        torch.where(finite, shaped - norm + mass, strikes, out=strikes)

    def _merged_blocked(self, device: torch.device) -> torch.Tensor:
        """(batch, merged ids) True where a merged token's events, played in order now, break a rule.

        A merged token is its note events and then at most one TIME_SHIFT, so each rule is a check of
        the sounding pitches (and clocks) against per-token tables: a NOTE_ON of a sounding pitch or a
        NOTE_OFF of a silent one, the polyphony at its fullest within the token, a TIME_SHIFT past the
        silence or held-note limit, and while notes are overlong only tokens that first release them.
        """
        if self.merged is None:
            tables = {
                name: torch.from_numpy(table).to(device) for name, table in self.tables._asdict().items()
            }
            self.merged = _merged_tables(tables, self.tok.base_size, self.tok.size)
        merged = self.merged
        sounding, silent, now, struck = (
            torch.from_numpy(state).to(device)
            for state in (self.sounding, self.silent, self.now, self.struck)
        )
        # Only the few sounding pitches matter (a token needing a pitch silent clashes only with a
        # sounding one; one needing it sounding, unless it sounds): products over those columns.
        playing = sounding.any(dim=0).nonzero()[:, 0]
        on = sounding[:, playing].float()  # (batch, playing)

        def over_playing(name: str) -> torch.Tensor:  # (batch, merged): sounding pitches in the token's table
            return on @ merged[name][playing]

        missing = merged["sounding_needed"] - over_playing("need_sounding")
        blocked = (over_playing("need_silent") + missing > 0) | merged["ill_formed"]
        if self.max_polyphony is not None:
            fullest = sounding.sum(dim=1, keepdim=True) + merged["peak"]
            blocked |= merged["strikes"] & (fullest > self.max_polyphony)
        still_on = on.sum(dim=1, keepdim=True) - over_playing("touched")  # sounding, not touched by it
        quiet_after = (still_on + merged["sounding_after"]) == 0
        shift = merged["shift"]
        if self.max_silence is not None:
            silent_before = torch.where(merged["strikes"], 0, silent[:, None])
            blocked |= quiet_after & (silent_before + shift > self.max_silence)
        if self.max_note is not None and len(playing):
            held = (now[:, None] - struck).masked_fill(~sounding, 0)[:, playing]
            untouched = 1 - merged["touched"][playing].long()  # (playing, merged)
            # the longest-held note that still sounds when the token's TIME_SHIFT starts
            held_after = (held[:, :, None] * untouched[None]).amax(dim=1)
            blocked |= shift > self.max_note - held_after
            overlong = (held >= self.max_note).float()
            if overlong.any():  # until released, a token must first release every overlong note
                blocked |= overlong @ (1 - merged["leading_offs"][playing]) > 0
        return blocked

    @staticmethod
    def _release_overlong(
        out: torch.Tensor, overlong: torch.Tensor, first: int, last: int, base: int
    ) -> None:
        """Rows holding notes for max_note steps may only release them (in the model's odds), or play a
        merged token that first releases them (`_merged_blocked`: the ids from ``base`` on)."""
        rows = overlong.any(dim=1)
        offs = out[rows, first:last].masked_fill(~overlong[rows], float("-inf"))
        # A row whose model gives every overlong NOTE_OFF zero probability releases them evenly.
        evenly = torch.zeros_like(offs).masked_fill(~overlong[rows], float("-inf"))
        offs = torch.where(torch.isinf(offs).all(dim=1, keepdim=True), evenly, offs)
        out[rows, :base] = float("-inf")
        out[rows, first:last] = offs


class IdTables(NamedTuple):
    """What each id does to the sounding pitches, and for merged ids what they need of them."""

    touched: np.ndarray  # (size, NUM_PITCHES) bool: pitches the id starts or ends
    final_on: np.ndarray  # (size, NUM_PITCHES) bool: of those, the ones sounding after it
    strikes: np.ndarray  # (size,) bool: it has a NOTE_ON
    shift: np.ndarray  # (size,) int64: TIME_SHIFT steps it moves on
    need_silent: np.ndarray  # (size, NUM_PITCHES) bool: pitches whose first event in it is a NOTE_ON
    need_sounding: np.ndarray  # (size, NUM_PITCHES) bool: pitches whose first event in it is a NOTE_OFF
    ill_formed: np.ndarray  # (size,) bool: a pitch struck (released) twice in a row inside it
    peak: np.ndarray  # (size,) int64: most pitches it adds to the sounding ones at any NOTE_ON in it
    leading_offs: np.ndarray  # (size, NUM_PITCHES) bool: pitches it releases before any other event


@functools.lru_cache(maxsize=8)
def _id_tables(layout: EventLayout, size: int) -> IdTables:
    pitches = (size, NUM_PITCHES)
    tables = IdTables(
        np.zeros(pitches, bool), np.zeros(pitches, bool), np.zeros(size, bool), np.zeros(size, np.int64),
        np.zeros(pitches, bool), np.zeros(pitches, bool), np.zeros(size, bool), np.zeros(size, np.int64),
        np.zeros(pitches, bool),
    )  # fmt: skip
    for token, events in enumerate([(i,) for i in range(layout.base_size)] + list(layout.merged)):
        if token < size:
            _fill_tables(tables, token, events, layout)
    return tables


def _fill_tables(tables: IdTables, token: int, events: tuple[int, ...], layout: EventLayout) -> None:
    """One id's rows of the tables, from its events played in order."""
    sounding: dict[int, bool] = {}
    added = 0
    leading = True
    for event in events:
        if layout.note_on_offset <= event < layout.time_shift_offset:
            pitch, on = (event - layout.note_on_offset) % NUM_PITCHES, event < layout.note_off_offset
            if pitch in sounding:
                tables.ill_formed[token] |= sounding[pitch] == on
            else:
                (tables.need_silent if on else tables.need_sounding)[token, pitch] = True
            sounding[pitch] = on
            added += 1 if on else -1
            if on:
                tables.strikes[token] = True
                tables.peak[token] = max(tables.peak[token], added)
            tables.leading_offs[token, pitch] |= leading and not on
            leading &= not on
        elif layout.time_shift_offset <= event < layout.velocity_offset:
            tables.shift[token] += event - layout.time_shift_offset + 1
            leading = False
        else:  # a VELOCITY or, inside a merged token, a special (the base rules mask specials)
            tables.ill_formed[token] |= len(events) > 1 and event < layout.note_on_offset
            leading = False
    for pitch, on in sounding.items():
        tables.touched[token, pitch] = True
        tables.final_on[token, pitch] = on


def _merged_tables(tables: dict, first: int, last: int) -> dict[str, torch.Tensor]:
    """The merged ids' rows of the tables, as `_merged_blocked` takes them: pitch tables as float
    (NUM_PITCHES, merged), so that the sounding pitches' rows are one contiguous gather."""
    rows = {name: table[first:last] for name, table in tables.items()}
    pitch_tables = ("need_silent", "need_sounding", "touched", "leading_offs")
    return {
        **{name: rows[name].T.float().contiguous() for name in pitch_tables},
        "sounding_needed": rows["need_sounding"].sum(dim=1).float(),
        "sounding_after": rows["final_on"].sum(dim=1).float(),
        **{name: rows[name] for name in ("ill_formed", "strikes", "peak", "shift")},
    }


# What the grammar samples with when neither the call nor the checkpoint's generation_config says.
GRAMMAR_DEFAULTS = {
    "max_polyphony": 16,
    "max_silence_seconds": 2.0,
    "max_note_seconds": 8.0,
    "soft_note_seconds": 2.0,
    "pitch_temperature": 0.8,
    "repeat_penalty": 1.0,
}
_layouts: dict[str, EventLayout] = {}  # name_or_path -> layout, so a tokenizer is loaded once


def _layout_of_model(model, tokenizer) -> EventLayout:
    if tokenizer is not None:
        return EventLayout.of(tokenizer)
    name = model.config.name_or_path
    if name not in _layouts:
        from transformers import AutoTokenizer

        try:  # the checkpoint's tokenizer.json: no code from the checkpoint runs
            _layouts[name] = EventLayout.of(AutoTokenizer.from_pretrained(name, trust_remote_code=False))
        except (OSError, ValueError) as error:
            raise ValueError(
                f"the grammar needs the checkpoint's tokenizer and none loads from {name!r} ({error}): "
                "pass tokenizer=... to generate"
            ) from error
    return _layouts[name]


def _fit_context(model, input_ids, attention_mask, max_new_tokens: int):
    """Keep the most recent events of a prompt that leaves no room in the context for max_new_tokens."""
    context = model.config.n_positions
    if max_new_tokens >= context:
        raise ValueError(
            f"max_new_tokens={max_new_tokens} does not fit the model's context of {context} tokens; ask for "
            f"fewer (hf_music.generate_midi continues past the context with a sliding window)"
        )
    keep = context - max_new_tokens
    if input_ids.shape[1] <= keep:
        return input_ids, attention_mask
    logger.warning(
        "prompt of %d tokens + max_new_tokens=%d exceed the context of %d: the prompt is cut to its last "
        "%d tokens (the grammar still follows the whole prompt)",
        input_ids.shape[1], max_new_tokens, context, keep,
    )  # fmt: skip
    return input_ids[:, -keep:], None if attention_mask is None else attention_mask[:, -keep:]


def _with_whole_prompt(out, prompt: torch.Tensor, seen: int):
    """Output rows with the whole prompt in front, as callers (pipelines) expect, however much the model saw."""
    if seen == prompt.shape[1]:
        return out
    cut = prompt[:, : prompt.shape[1] - seen]
    if isinstance(out, torch.Tensor):
        return torch.cat((cut, out), dim=1)
    out.sequences = torch.cat((cut, out.sequences), dim=1)
    return out


def generate(*args, model, tokenizer=None, **kwargs):
    """``model.generate`` with `PerformanceGrammarLogitsProcessor` added (transformers' custom_generate).

    ``model`` is keyword-only: transformers calls ``generate(model=model, **arguments)`` for
    ``custom_generate=...``, and installs ``partial(generate, model=model)`` as the model's
    ``generate`` on loading, where the prompt may come positionally (``model.generate(ids)``).

    Takes what ``model.generate`` takes, plus the settings of GRAMMAR_DEFAULTS (``max_polyphony``,
    ``max_silence_seconds``, ``max_note_seconds``, ``soft_note_seconds``, ``pitch_temperature``,
    ``repeat_penalty``: else from the generation_config, else GRAMMAR_DEFAULTS) and ``tokenizer``
    (else the checkpoint's tokenizer.json). <eos> is masked, so every sequence has max_new_tokens
    events. A prompt too long for the context keeps its last events (with a warning), and the
    output still starts with the whole prompt.
    """
    kwargs.pop("custom_generate", None)  # this function is the custom generate: no second one
    prompt = args[0] if args else kwargs.pop("inputs", None)  # args: those of GenerationMixin.generate
    prompt = kwargs.pop("input_ids", None) if prompt is None else prompt
    layout = _layout_of_model(model, tokenizer)
    config = kwargs.get("generation_config") or model.generation_config
    if prompt is None:
        prompt = torch.tensor([[layout.bos_token_id]], device=model.device)
    settings = {
        name: kwargs.pop(name) if name in kwargs else getattr(config, name, default)
        for name, default in GRAMMAR_DEFAULTS.items()
    }
    max_new_tokens = kwargs.pop("max_new_tokens", None) or config.max_new_tokens
    max_length = kwargs.pop("max_length", None) or config.max_length
    max_new_tokens = max_new_tokens or max_length - prompt.shape[1]
    input_ids, attention_mask = _fit_context(
        model, prompt, kwargs.pop("attention_mask", None), max_new_tokens
    )
    if attention_mask is not None:
        kwargs["attention_mask"] = attention_mask
    processors = LogitsProcessorList(kwargs.pop("logits_processor", None) or [])
    processors.append(PerformanceGrammarLogitsProcessor(layout, history=prompt.tolist(), **settings))
    kwargs.setdefault("pad_token_id", layout.pad_token_id)
    # The class's generate: the instance's may be this very function (transformers installs it).
    out = GenerationMixin.generate(
        model, input_ids, *args[1:], logits_processor=processors, max_new_tokens=max_new_tokens, **kwargs
    )
    return _with_whole_prompt(out, prompt, input_ids.shape[1])


__all__ = [
    "EventLayout",
    "IdTables",
    "PerformanceGrammarLogitsProcessor",
    "generate",
    "grammar_violations",
    "sounding_clock",
    "sounding_pitches",
]
