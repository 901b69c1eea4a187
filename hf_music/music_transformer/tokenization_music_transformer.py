"""Performance-event MIDI tokenizer of the Music Transformer (Oore et al. 2018; Huang et al. 2018).

Vocabulary (defaults give 391 ids):

    <pad> <bos> <eos>                      special tokens, ids 0, 1, 2
    NOTE_ON_0 .. NOTE_ON_127               a key goes down
    NOTE_OFF_0 .. NOTE_OFF_127             a key (or the sustain pedal holding it) goes up
    TIME_SHIFT_1 .. TIME_SHIFT_100         time moves on by k * 10 ms (10 ms .. 1 s)
    VELOCITY_0 .. VELOCITY_31              loudness bin of the following NOTE_ONs
    NOTE_OFF_60+VELOCITY_20+NOTE_ON_64 ..  with ``bpe_merges`` only: merged events (byte-pair
                                           encoding, Fradet et al. 2023), after the base ids

Encoding order at one instant (documented, tested): all NOTE_OFFs by ascending pitch, then the
NOTE_ONs by ascending pitch, each preceded by a VELOCITY token only when its velocity bin differs
from the previous NOTE_ON's. Times are absolute seconds through the tempo map, rounded to the
nearest step. All non-drum tracks are merged; drums are dropped.

This file is copied into checkpoints by ``save_pretrained`` for ``trust_remote_code``: it uses
relative imports only and imports symusic inside ``try`` so that a missing package is reported
when MIDI is used, not when the tokenizer is loaded. ``save_pretrained`` also writes the text side
as a 🤗 tokenizers ``tokenizer.json`` (word level over the event names), which
``AutoTokenizer.from_pretrained`` loads as a fast tokenizer without running this file, and which
transformers.js reads as well.
"""

from __future__ import annotations

import json
import logging
import os
from typing import NamedTuple

import numpy as np
from transformers import PreTrainedTokenizer

try:
    import symusic
except ImportError:  # reported by _require_symusic() when MIDI is actually read or written
    symusic = None

SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>")
FAST_TOKENIZER_FILE = "tokenizer.json"
# What tokenizer_config.json names for loaders without this file: transformers' own fast tokenizer
# class over tokenizer.json (auto_map still names MidiTokenizer for trust_remote_code).
FAST_TOKENIZER_CLASS = "TokenizersBackend"
NUM_PITCHES = 128
# A merged (BPE) token is named by its events joined with this: the grammar and Hub users read
# the expansion from the name alone.
MERGE_SEPARATOR = "+"
# 🤗 tokenizers' BPE works on characters: base id i is the character chr(BPE_FIRST_CHAR + i) (a CJK
# block, so no id is whitespace or a control character), as miditok maps its ids to characters.
BPE_FIRST_CHAR = 0x4E00
# 120 quarter notes per minute and 500 ticks per quarter: one tick is exactly one millisecond.
_TICKS_PER_QUARTER = 500
_QPM = 120.0
# Bounds on one piece, checked before anything proportional to its length is allocated: a 44-byte
# file with one note at tick 2**28, one tick per quarter and the slowest tempo spans 143 years, or
# 4.5e11 time steps (numpy's MemoryError, 34 GB). All far above real music: MAESTRO v3's longest
# performance is 44 minutes, its largest file under 1 MB.
MAX_MIDI_BYTES = 64 * 2**20
MAX_PIECE_SECONDS = 6 * 3600
MAX_PIECE_NOTES = 1_000_000

logger = logging.getLogger(__name__)


class MidiReadError(ValueError):
    """A MIDI input could not be read. The message names the file and the cause."""


class PieceTooLongError(MidiReadError):
    """A MIDI input is longer than MAX_PIECE_SECONDS or has more than MAX_PIECE_NOTES notes."""


class PerformanceNotes(NamedTuple):
    """Notes of a performance as parallel arrays, times in seconds (offset is pedal-extended)."""

    onset: np.ndarray
    offset: np.ndarray
    pitch: np.ndarray
    velocity: np.ndarray

    def __len__(self) -> int:  # number of notes, not number of fields
        return int(self.pitch.shape[0])


def _require_symusic():
    if symusic is None:
        raise ImportError(
            "hf_music's MIDI tokenizer needs the 'symusic' package to read and write MIDI: pip install symusic"
        )
    return symusic


def _describe(midi) -> str:
    if isinstance(midi, (bytes, bytearray, memoryview)):
        return f"<{len(midi)} bytes of MIDI>"
    return str(midi)


def load_score(midi, name: str | None = None):
    """Return a ``symusic.Score`` for a path, raw bytes or a Score; raise MidiReadError naming the file.

    Notes the MIDI parser drops (see `read_score`) are reported in a warning naming the file.
    """
    return read_score(midi, name)[0]


def read_score(midi, name: str | None = None):
    """``(Score, notes dropped)`` for a path, raw bytes or a Score, the piece's size checked.

    Raises MidiReadError naming the file for what is not MIDI, a file over MAX_MIDI_BYTES, and
    PieceTooLongError for a piece over MAX_PIECE_SECONDS or MAX_PIECE_NOTES (checked before
    anything is allocated per time step). symusic drops NOTE_ONs never closed and the tracks
    beyond the count in the header: those notes are counted and reported in a warning.
    """
    sm = _require_symusic()
    label = name or _describe(midi)
    if isinstance(midi, sm.Score):  # the factory matches Tick, Quarter and Second scores
        check_piece_size(midi, label)
        return midi, 0
    data = _read_bytes(midi, label)
    if data[:4] == b"RIFF":
        data = unwrap_riff_midi(data, label)
    try:
        score = sm.Score.from_midi(data)
    except Exception as err:  # symusic raises RuntimeError with a parser message
        raise MidiReadError(f"{label}: not a valid MIDI file ({err})") from err
    check_piece_size(score, label)
    declared, chunks = _track_chunks(data)
    if declared > len(chunks):
        logger.warning("%s: the header declares %d tracks, %d are present", label, declared, len(chunks))
    dropped = notes_dropped_by_parser(data, score)
    if dropped:
        logger.warning("%s: %d note(s) dropped (NOTE_ONs never closed, or tracks beyond the header's count)",
                       label, dropped)  # fmt: skip
    return score, dropped


def _read_bytes(midi, label: str) -> bytes:
    if isinstance(midi, (bytes, bytearray, memoryview)):
        data = bytes(midi)
    elif isinstance(midi, (str, os.PathLike)):
        try:
            with open(midi, "rb") as fh:
                data = fh.read(MAX_MIDI_BYTES + 1)  # never more than the cap into memory
        except OSError as err:
            raise MidiReadError(f"{label}: cannot open MIDI file ({err.strerror or err})") from err
    else:
        raise TypeError(f"expected a MIDI path, bytes or symusic.Score, got {type(midi).__name__}")
    if not data:
        raise MidiReadError(f"{label}: not a MIDI file (the file is empty)")
    if len(data) > MAX_MIDI_BYTES:
        raise MidiReadError(f"{label}: over {MAX_MIDI_BYTES >> 20} MB, far more than any piece; refused")
    return data


def check_piece_size(score, label: str, max_quarters: float | None = None) -> None:
    """PieceTooLongError naming the file when a Score exceeds MAX_PIECE_NOTES or MAX_PIECE_SECONDS
    (or ``max_quarters`` quarter notes, which bar-based vocabularies spend tokens on)."""
    notes = score.note_num()
    if notes > MAX_PIECE_NOTES:
        raise PieceTooLongError(f"{label}: {notes:,} notes, over the limit of {MAX_PIECE_NOTES:,} per piece")
    if not isinstance(score, _require_symusic().core.ScoreTick):
        score = score.to("tick")
    end = score.end()
    seconds = float(tick_to_seconds(score)(end))
    if seconds > MAX_PIECE_SECONDS:
        raise PieceTooLongError(
            f"{label}: lasts {seconds / 3600:,.1f} h, over the limit of {MAX_PIECE_SECONDS / 3600:g} h per piece"
        )
    quarters = end / score.ticks_per_quarter
    if max_quarters is not None and quarters > max_quarters:
        raise PieceTooLongError(
            f"{label}: {quarters:,.0f} quarter notes, over the limit of {max_quarters:,.0f} per piece"
        )


def _track_chunks(data: bytes) -> tuple[int, list[bytes]]:
    """(tracks the header declares, the MTrk chunks present) of a Standard MIDI File."""
    declared = int.from_bytes(data[10:12], "big")
    chunks, position = [], 8 + int.from_bytes(data[4:8], "big")
    while position + 8 <= len(data):
        size = int.from_bytes(data[position + 4 : position + 8], "big")
        if data[position : position + 4] == b"MTrk":
            chunks.append(data[position + 8 : position + 8 + size])
        position += 8 + size
    return declared, chunks


# NOTE_OFF of every pitch on every channel, at delta time 0: appended to a track, it closes
# every note still sounding there.
_ALL_NOTES_OFF = b"".join(
    bytes((0, 0x80 | channel, pitch, 0)) for channel in range(16) for pitch in range(128)
)


def notes_dropped_by_parser(data: bytes, score) -> int:
    """Notes of the file that symusic's Score lacks: NOTE_ONs never closed, tracks beyond the header's
    count. Counted by parsing again a copy whose tracks all end with NOTE_OFFs for every key and
    whose header declares every track present (one more parse in C++, no event loop in Python)."""
    chunks = _track_chunks(data)[1]
    if not chunks:
        return 0
    closed = []
    for chunk in chunks:
        if chunk.endswith(b"\xff\x2f\x00"):  # End of Track: its delta time now leads the NOTE_OFFs
            track = chunk[:-3] + _ALL_NOTES_OFF[1:] + b"\x00\xff\x2f\x00"
        else:
            track = chunk + _ALL_NOTES_OFF
        closed.append(b"MTrk" + len(track).to_bytes(4, "big") + track)
    header = data[:10] + len(chunks).to_bytes(2, "big") + data[12 : 8 + int.from_bytes(data[4:8], "big")]
    try:
        complete = _require_symusic().Score.from_midi(header + b"".join(closed))
    except Exception:  # the repaired copy should parse when the file did; if not, count nothing
        return 0
    return max(0, complete.note_num() - score.note_num())


def unwrap_riff_midi(data: bytes, label: str) -> bytes:
    """The Standard MIDI File inside a RIFF MIDI (.rmi) file: its "data" chunk."""
    if data[8:12] != b"RMID":
        raise MidiReadError(f"{label}: a RIFF file, but not RIFF MIDI (form {data[8:12]!r})")
    position = 12
    while position + 8 <= len(data):
        chunk, size = (
            data[position : position + 4],
            int.from_bytes(data[position + 4 : position + 8], "little"),
        )
        if chunk == b"data":
            return data[position + 8 : position + 8 + size]
        position += 8 + size + (size & 1)  # RIFF chunks are padded to an even length
    raise MidiReadError(f"{label}: a RIFF MIDI file without a 'data' chunk")


def as_id_array(ids) -> np.ndarray:
    """Token ids as a flat int64 array; a ValueError (not OverflowError/TypeError) for what is not one."""
    if hasattr(ids, "detach"):  # a torch tensor, without importing torch here
        ids = ids.detach().cpu().numpy()
    try:
        array = np.asarray(ids)
        if array.dtype == object or not (np.issubdtype(array.dtype, np.integer) or array.size == 0):
            raise TypeError(f"dtype {array.dtype}")
        return array.astype(np.int64).ravel()
    except (OverflowError, TypeError, ValueError) as err:
        raise ValueError(f"token ids must be integers from 0 to 2**63 - 1 ({err})") from None


def tick_to_seconds(score):
    """A vectorized function mapping ticks to seconds (float64) through the score's tempo map.

    symusic's own ``Score.to("second")`` works in float32, whose error can move a note that
    lies exactly between two 10 ms steps to either side; float64 keeps rounding reproducible.
    """
    tpq = score.ticks_per_quarter
    tempos = score.tempos.numpy() if len(score.tempos) else {"time": np.zeros(0), "mspq": np.zeros(0)}
    order = np.argsort(tempos["time"], kind="stable")
    change_tick = tempos["time"][order].astype(np.float64)
    us_per_quarter = tempos["mspq"][order].astype(np.float64)
    if len(change_tick) == 0 or change_tick[0] > 0:  # MIDI's default tempo before the first change
        change_tick = np.concatenate(([0.0], change_tick))
        us_per_quarter = np.concatenate(([500_000.0], us_per_quarter))
    sec_per_tick = us_per_quarter / (1e6 * tpq)
    if len(change_tick) == 1:  # one tempo: a plain scale
        scale = float(sec_per_tick[0])
        return lambda ticks: np.asarray(ticks, np.float64) * scale
    change_sec = np.concatenate(([0.0], np.cumsum(np.diff(change_tick) * sec_per_tick[:-1])))

    def convert(ticks):
        ticks = np.asarray(ticks, np.float64)
        i = np.searchsorted(change_tick, ticks, side="right") - 1
        i = np.maximum(i, 0)
        return change_sec[i] + (ticks - change_tick[i]) * sec_per_tick[i]

    return convert


def pedal_intervals(track, end_tick: int) -> tuple[np.ndarray, np.ndarray]:
    """(down, up) ticks of the sustain pedal (CC64 >= 64 is down) of one track.

    A pedal still down when the file ends is released at ``end_tick`` (symusic's own
    ``track.pedals`` drops it, which would cut the last chords of many performances short).
    """
    controls = track.controls.numpy()
    is_sustain = controls["number"] == 64
    tick = controls["time"][is_sustain].astype(np.int64)
    pressed = controls["value"][is_sustain] >= 64
    if (tick[1:] < tick[:-1]).any():
        order = np.argsort(tick, kind="stable")
        tick, pressed = tick[order], pressed[order]
    was_pressed = np.concatenate(([False], pressed[:-1]))
    down = tick[pressed & ~was_pressed]
    up = tick[~pressed & was_pressed]
    if len(up) < len(down):
        up = np.concatenate((up, [max(int(end_tick), int(down[-1]))]))
    return down, up


def score_to_notes(score, sustain_pedal: bool = True) -> PerformanceNotes:
    """Merge the non-drum tracks of a Score into note arrays in seconds, releases extended by the pedal."""
    sm = _require_symusic()
    if not isinstance(score, sm.core.ScoreTick):
        score = score.to("tick")
    seconds = tick_to_seconds(score)
    end_tick = score.end()
    onsets, offsets, pitches, velocities = [], [], [], []
    for track in score.tracks:
        if track.is_drum or track.note_num() == 0:
            continue
        notes = track.notes.numpy()
        start_tick = notes["time"].astype(np.int64)
        onset = seconds(start_tick)
        offset = seconds(start_tick + notes["duration"])
        down, up = pedal_intervals(track, end_tick) if sustain_pedal else ((), ())
        if len(down):
            # A release inside [pedal down, pedal up) is held until the pedal comes up.
            down, up = seconds(down), seconds(up)
            idx = np.searchsorted(down, offset, side="right") - 1
            held = (idx >= 0) & (offset < up[np.maximum(idx, 0)])
            offset = np.where(held, up[np.maximum(idx, 0)], offset)
        onsets.append(onset)
        offsets.append(offset)
        pitches.append(notes["pitch"].astype(np.int64))
        velocities.append(notes["velocity"].astype(np.int64))
    if not onsets:
        empty_f, empty_i = np.zeros(0, np.float64), np.zeros(0, np.int64)
        return PerformanceNotes(empty_f, empty_f.copy(), empty_i, empty_i.copy())
    return PerformanceNotes(
        np.concatenate(onsets), np.concatenate(offsets), np.concatenate(pitches), np.concatenate(velocities)
    )


def seconds_to_steps(seconds, step: float) -> np.ndarray:
    """Nearest step, halves rounded up (a tiny epsilon absorbs float noise at exact halves)."""
    return np.floor(np.asarray(seconds, np.float64) / step + 0.5 + 1e-6).astype(np.int64)


def id_rows(ids) -> tuple:
    """(ids, several): a tensor becomes numpy, and ``several`` says whether ids hold a batch of
    sequences (a 2-D array or tensor, or a list of lists or arrays) rather than one."""
    if hasattr(ids, "detach"):
        ids = ids.detach().cpu().numpy()
    if isinstance(ids, np.ndarray):
        return ids, ids.ndim == 2
    return ids, isinstance(ids, (list, tuple)) and bool(ids) and isinstance(ids[0], (list, tuple, np.ndarray))


class WordVocabulary:
    """The transformers tokenizer API over a fixed word list (``_id_to_token``, ``_token_to_id``):
    text is tokens separated by spaces. Shared by MidiTokenizer and tokenization_miditok."""

    @property
    def vocab_size(self) -> int:
        return len(self._id_to_token)

    def get_vocab(self) -> dict[str, int]:
        vocab = dict(self._token_to_id)
        vocab.update(self.added_tokens_encoder)
        return vocab

    def _tokenize(self, text: str, **kwargs) -> list[str]:
        return text.split()

    def _convert_id_to_token(self, index: int) -> str:
        return self._id_to_token[index]


class MidiTokenizer(WordVocabulary, PreTrainedTokenizer):
    """Performance-event tokenizer for piano MIDI, a ``transformers`` tokenizer.

    Args:
        time_resolution_ms: length of one TIME_SHIFT step in milliseconds (10).
        max_time_shift: number of TIME_SHIFT tokens, so the longest single shift is
            ``max_time_shift * time_resolution_ms`` (100 -> 1 s). Longer gaps use several.
        num_velocity_bins: number of VELOCITY tokens (32); MIDI velocity v falls in bin
            ``v * num_velocity_bins // 128`` and decodes to the bin's centre.
        sustain_pedal: extend note releases to the sustain pedal's release (CC64 >= 64), as
            Magenta and the Music Transformer do.
        bpe_merges: byte-pair merges over the events, ``[[left_id, right_id], ...]`` in the order
            learned (from :meth:`train_bpe`); merge i is id ``base_vocab_size + i``. A merged token
            holds note events and at most one TIME_SHIFT, its last (merges never cross a time
            shift), so each token is one instant of the performance and the time after it.

    The text form is space-separated event names: ``tok("NOTE_ON_60 TIME_SHIFT_50 NOTE_OFF_60")``
    gives ``<bos>`` and the events (no ``<eos>``: a prompt is to be continued), and decoding writes
    each event with a leading space, as GPT-2's tokens carry theirs, so that a continuation decoded
    on its own and appended to its prompt (what ``pipeline("text-generation")`` does) stays
    space-separated. Padding and truncation are on the left, for generation. For MIDI use
    :meth:`encode_midi` and :meth:`decode_midi` (training pieces get ``<bos>`` and ``<eos>`` there).
    """

    vocab_files_names: dict[str, str] = {}  # the vocabulary follows from the arguments alone
    model_input_names = ["input_ids", "attention_mask"]
    # hf_music's music-tokenizer interface (hf_music.music_tokenizer.MusicTokenizer) beyond MIDI <-> ids:
    # what generate_ids can steer with these ids: transformers' warpers, and the performance grammar
    # (grammar.py beside this file in hf_music, a checkpoint's custom_generate/): "constrained" and its limits and soft rules.
    sampling_controls = (
        "temperature", "top_k", "top_p", "min_p", "constrained", "pitch_temperature", "max_polyphony",
        "max_silence_seconds", "max_note_seconds", "soft_note_seconds", "repeat_penalty",
    )  # fmt: skip
    # Training augmentation is drawn per window from the ids (hf_music.windows: transposed NOTE_ONs,
    # time stretched by re-encoding), not when the corpus is read.
    augmentation_stage = "windows"
    keeps_instruments = False  # every non-drum track is merged into one piano part

    def __init__(
        self,
        time_resolution_ms: int = 10,
        max_time_shift: int = 100,
        num_velocity_bins: int = 32,
        sustain_pedal: bool = True,
        bpe_merges: list | None = None,
        pad_token: str = "<pad>",
        bos_token: str = "<bos>",
        eos_token: str = "<eos>",
        **kwargs,
    ):
        if time_resolution_ms <= 0 or max_time_shift < 1 or not 1 <= num_velocity_bins <= 128:
            raise ValueError(
                "need time_resolution_ms > 0, max_time_shift >= 1 and 1 <= num_velocity_bins <= 128, got "
                f"{time_resolution_ms}, {max_time_shift}, {num_velocity_bins}"
            )
        self.time_resolution_ms = int(time_resolution_ms)
        self.max_time_shift = int(max_time_shift)
        self.num_velocity_bins = int(num_velocity_bins)
        self.sustain_pedal = bool(sustain_pedal)
        self.note_on_offset = len(SPECIAL_TOKENS)
        self.note_off_offset = self.note_on_offset + NUM_PITCHES
        self.time_shift_offset = self.note_off_offset + NUM_PITCHES
        self.velocity_offset = self.time_shift_offset + self.max_time_shift
        self._id_to_token = [
            *SPECIAL_TOKENS,
            *(f"NOTE_ON_{p}" for p in range(NUM_PITCHES)),
            *(f"NOTE_OFF_{p}" for p in range(NUM_PITCHES)),
            *(f"TIME_SHIFT_{k}" for k in range(1, self.max_time_shift + 1)),
            *(f"VELOCITY_{b}" for b in range(self.num_velocity_bins)),
        ]
        self.base_vocab_size = len(self._id_to_token)
        self.bpe_merges = self._add_merges(bpe_merges or [])
        self._token_to_id = {tok: i for i, tok in enumerate(self._id_to_token)}
        # Pattern is not saved by transformers, so it is set here on every construction.
        kwargs.setdefault("special_tokens_pattern", "bos")
        kwargs.setdefault("padding_side", "left")
        kwargs.setdefault("truncation_side", "left")  # an over-long prompt keeps its most recent events
        super().__init__(
            time_resolution_ms=self.time_resolution_ms,
            max_time_shift=self.max_time_shift,
            num_velocity_bins=self.num_velocity_bins,
            sustain_pedal=self.sustain_pedal,
            **({"bpe_merges": [list(pair) for pair in self.bpe_merges]} if self.bpe_merges else {}),
            pad_token=pad_token,
            bos_token=bos_token,
            eos_token=eos_token,
            **kwargs,
        )

    def _add_merges(self, merges) -> list[tuple[int, int]]:
        """Append the merged tokens; keep each one's expansion (base ids) as a ragged array."""
        expansions = [(i,) for i in range(self.base_vocab_size)]
        pairs = []
        for pair in merges:
            left, right = (int(i) for i in pair)
            if not (
                len(SPECIAL_TOKENS) <= left < len(expansions)
                and len(SPECIAL_TOKENS) <= right < len(expansions)
            ):
                raise ValueError(
                    f"bpe merge {pair}: ids must be events or earlier merges (3..{len(expansions) - 1})"
                )
            events = expansions[left] + expansions[right]
            if any(self.time_shift_offset <= i < self.velocity_offset for i in events[:-1]):
                raise ValueError(f"bpe merge {pair}: a TIME_SHIFT may only end a merged token")
            expansions.append(events)
            pairs.append((left, right))
            self._id_to_token.append(MERGE_SEPARATOR.join(self._id_to_token[i] for i in events))
        lengths = np.array([len(e) for e in expansions], np.int64)
        self._expansion_start = np.concatenate(([0], np.cumsum(lengths)))
        self._expansion_ids = np.fromiter((i for e in expansions for i in e), np.int64, int(lengths.sum()))
        # Per id: the time steps it moves on and the notes it strikes (statistics and stopping rules).
        base = self._expansion_ids
        shift = np.where(
            (base >= self.time_shift_offset) & (base < self.velocity_offset),
            base - self.time_shift_offset + 1,
            0,
        )
        strikes = (base >= self.note_on_offset) & (base < self.note_off_offset)
        self.steps_of_id = np.add.reduceat(shift, self._expansion_start[:-1])
        self.notes_of_id = np.add.reduceat(strikes.astype(np.int64), self._expansion_start[:-1])
        self._bpe = None  # the 🤗 tokenizers BPE model, built when first needed
        return pairs

    # ------------------------------------------------------------------ transformers API
    def _convert_token_to_id(self, token: str) -> int:
        try:
            return self._token_to_id[token]
        except KeyError:
            raise ValueError(
                f"unknown event {token!r}: expected NOTE_ON_p, NOTE_OFF_p (p in 0..127), "
                f"TIME_SHIFT_k (k in 1..{self.max_time_shift}), VELOCITY_b (b in 0..{self.num_velocity_bins - 1}) "
                f"or one of {', '.join(SPECIAL_TOKENS)}"
            ) from None

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        return "".join(" " + token for token in tokens)

    def save_vocabulary(self, save_directory: str, filename_prefix: str | None = None) -> tuple[str, ...]:
        return ()  # tokenizer_config.json holds every argument the vocabulary is built from

    def fast_tokenizer(self):
        """The text side as a 🤗 ``tokenizers.Tokenizer``: the same ids for event text, no Python code.

        Word level over the event names after whitespace splitting, ``<bos>`` in front (no ``<eos>``),
        a leading space per decoded event (as :meth:`convert_tokens_to_string`). No padding here
        (tokenizer_config.json tells transformers to pad on the left). An unknown event is an error there too (tokenizers names it "Missing [UNK] token").
        """
        from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors

        fast = Tokenizer(models.WordLevel(vocab=dict(self._token_to_id), unk_token=None))
        fast.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        fast.add_special_tokens(list(SPECIAL_TOKENS))
        fast.post_processor = processors.TemplateProcessing(
            single=f"{self.bos_token} $A",
            pair=f"{self.bos_token} $A $B",
            special_tokens=[(self.bos_token, self.bos_token_id)],
        )
        fast.decoder = decoders.Replace(Regex("^"), " ")
        return fast

    def save_pretrained(self, save_directory, *args, **kwargs):
        """Saves tokenizer_config.json (and the code, for trust_remote_code) plus ``tokenizer.json``.

        tokenizer_config.json names transformers' fast tokenizer class, so that plain
        ``AutoTokenizer.from_pretrained`` reads tokenizer.json without running code from the folder;
        its ``auto_map`` keeps MidiTokenizer for ``trust_remote_code=True`` (MIDI in and out).
        """
        files = super().save_pretrained(save_directory, *args, **kwargs)
        fast_file = os.path.join(save_directory, FAST_TOKENIZER_FILE)
        self.fast_tokenizer().save(fast_file)
        config_file = os.path.join(save_directory, "tokenizer_config.json")
        with open(config_file, encoding="utf-8") as fh:
            config = json.load(fh)
        config.update(
            tokenizer_class=FAST_TOKENIZER_CLASS,
            add_bos_token=True,
            add_eos_token=False,
            clean_up_tokenization_spaces=False,
        )
        for loading_detail in ("special_tokens_pattern", "is_local", "local_files_only"):  # not settings
            config.pop(loading_detail, None)
        with open(config_file, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
        return (*files, fast_file)

    # ------------------------------------------------------------------ byte-pair encoding
    @property
    def is_bpe(self) -> bool:
        return bool(self.bpe_merges)

    def base_ids(self, ids) -> np.ndarray:
        """The performance events of an id sequence: merged tokens expanded, ids past the vocabulary dropped."""
        ids = as_id_array(ids)
        if not self.bpe_merges:
            return ids
        ids = ids[(ids >= 0) & (ids < self.vocab_size)]
        start = self._expansion_start[ids]
        lengths = self._expansion_start[ids + 1] - start
        first = np.repeat(np.cumsum(lengths) - lengths, lengths)
        return self._expansion_ids[np.repeat(start, lengths) + np.arange(int(lengths.sum())) - first]

    def _bpe_pre_tokenizer(self):
        """Words end after each TIME_SHIFT: merges stay within one instant and the time after it."""
        from tokenizers import Regex, pre_tokenizers

        first, last = (chr(BPE_FIRST_CHAR + i) for i in (self.time_shift_offset, self.velocity_offset - 1))
        return pre_tokenizers.Split(Regex(f"[{first}-{last}]"), behavior="merged_with_previous")

    @staticmethod
    def _as_chars(ids) -> str:
        return (np.asarray(ids, np.uint32) + BPE_FIRST_CHAR).astype("<u4").tobytes().decode("utf-32-le")

    def _bpe_model(self):
        """A 🤗 tokenizers BPE model whose ids are this tokenizer's: characters in, merged ids out."""
        if self._bpe is None:
            from tokenizers import Tokenizer, models

            chars = [
                self._as_chars(self._expansion_ids[a:b])
                for a, b in zip(self._expansion_start[:-1], self._expansion_start[1:], strict=True)
            ]
            merges = [(chars[left], chars[right]) for left, right in self.bpe_merges]
            self._bpe = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(chars)}, merges=merges))
            self._bpe.pre_tokenizer = self._bpe_pre_tokenizer()
        return self._bpe

    def merge(self, ids) -> np.ndarray:
        """Apply the BPE merges to base event ids (the identity without merges)."""
        ids = as_id_array(ids)
        if not self.bpe_merges or not len(ids):
            return ids
        return np.asarray(
            self._bpe_model().encode(self._as_chars(ids), add_special_tokens=False).ids, np.int64
        )

    def train_bpe(self, pieces, vocab_size: int, show_progress: bool = False) -> MidiTokenizer:
        """A new tokenizer with BPE merges learned by 🤗 tokenizers' trainer on pieces of base ids.

        ``vocab_size`` counts every id (the 391 base ids included). Specials in the pieces are ignored.
        """
        from tokenizers import Tokenizer, models, trainers

        if self.bpe_merges:
            raise ValueError("train_bpe starts from the base vocabulary; this tokenizer has merges already")
        if vocab_size <= self.base_vocab_size:
            raise ValueError(f"vocab_size must exceed the {self.base_vocab_size} base ids, got {vocab_size}")
        learner = Tokenizer(models.BPE())
        learner.pre_tokenizer = self._bpe_pre_tokenizer()
        events = range(len(SPECIAL_TOKENS), self.base_vocab_size)
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size - len(SPECIAL_TOKENS), initial_alphabet=[self._as_chars([i]) for i in events],
            show_progress=show_progress, special_tokens=[],
        )  # fmt: skip
        texts = (self._as_chars(ids[ids >= len(SPECIAL_TOKENS)]) for ids in map(as_id_array, pieces))
        learner.train_from_iterator(texts, trainer=trainer, length=len(pieces))
        id_of = {self._as_chars([i]): i for i in events}
        merges = []
        for merge in json.loads(learner.to_str())["model"]["merges"]:
            left, right = merge.split(" ") if isinstance(merge, str) else merge
            if left + right not in id_of:  # one token per expansion
                id_of[left + right] = self.base_vocab_size + len(merges)
                merges.append([id_of[left], id_of[right]])
        kwargs = {k: v for k, v in self.init_kwargs.items() if k != "bpe_merges"}
        return type(self)(**{**kwargs, "bpe_merges": merges})

    @property
    def vocabulary_description(self) -> str:
        """The vocabulary in words, for the line saying what a training run does."""
        merges = f", {len(self.bpe_merges)} of them BPE merges" if self.is_bpe else ""
        return f"the performance-event vocabulary ({self.vocab_size} ids{merges}; tracks merged into one piano part)"

    # ------------------------------------------------------------------ MIDI -> ids
    @property
    def time_step(self) -> float:
        """Seconds per TIME_SHIFT step: the ids carry a clock (``steps_of_id``) that counts the music."""
        return self.time_resolution_ms / 1000.0

    def seconds(self, ids) -> float:
        """Seconds of music the ids advance: their TIME_SHIFT steps (merged tokens included)."""
        ids = as_id_array(ids)
        known = ids[
            (ids >= 0) & (ids < len(self.steps_of_id))
        ]  # a model's vocabulary may be padded past ours
        return int(self.steps_of_id[known].sum()) * self.time_step

    def midi_to_notes(self, midi, name: str | None = None) -> PerformanceNotes:
        """Read a path, bytes or Score into merged, pedal-extended note arrays (seconds)."""
        return self.read_notes(midi, name)[0]

    def read_notes(self, midi, name: str | None = None) -> tuple[PerformanceNotes, int]:
        """``(notes, notes the MIDI parser dropped)``: see `read_score` for the checks and the count."""
        score, dropped = read_score(midi, name)
        return score_to_notes(score, sustain_pedal=self.sustain_pedal), dropped

    def encode_midi(
        self, midi, add_special_tokens: bool = True, max_seconds: float | None = None, name: str | None = None
    ) -> list[int] | list[list[int]]:
        """Encode a MIDI path, raw bytes or ``symusic.Score`` (or a list of them) into token ids.

        ``max_seconds`` keeps only the notes that start before that time, cut there (a prompt's
        first seconds); ``name`` is how errors name MIDI bytes. Raises MidiReadError (a ValueError
        naming the file) for unreadable input. A valid file without notes gives only the special tokens.
        """
        if isinstance(midi, (list, tuple)):
            return [self.encode_midi(m, add_special_tokens, max_seconds) for m in midi]
        notes = self.midi_to_notes(midi, name=name)
        if max_seconds is not None:
            keep = notes.onset < max_seconds
            notes = PerformanceNotes(
                notes.onset[keep],
                np.minimum(notes.offset[keep], max_seconds),
                notes.pitch[keep],
                notes.velocity[keep],
            )
        return self.encode_notes(notes, add_special_tokens=add_special_tokens).tolist()

    def quantize_notes(self, notes: PerformanceNotes) -> tuple[np.ndarray, ...]:
        """Notes on the step grid, in event order, with a re-struck pitch ending the sounding one.

        Returns ``(on, off, pitch, velocity_bin, num_dropped)``: integer steps sorted by (on, pitch).
        Every note lasts at least one step; of several strikes of one pitch within the same
        step only the last (in file order) is kept, the others are counted in ``num_dropped``.
        """
        if len(notes) > MAX_PIECE_NOTES or (len(notes) and float(np.max(notes.offset)) > MAX_PIECE_SECONDS):
            raise PieceTooLongError(
                f"notes: {len(notes):,} notes over {float(np.max(notes.offset)) / 3600:,.1f} h, over the limits "
                f"of {MAX_PIECE_NOTES:,} notes and {MAX_PIECE_SECONDS / 3600:g} h per piece"
            )
        on = seconds_to_steps(notes.onset, self.time_step)
        off = seconds_to_steps(notes.offset, self.time_step)
        pitch = np.asarray(notes.pitch, np.int64)
        velocity = np.asarray(notes.velocity, np.int64)
        keep = (pitch >= 0) & (pitch < NUM_PITCHES) & (on >= 0) & (velocity >= 0) & (velocity < 128)
        if not keep.all():
            on, off, pitch, velocity = on[keep], off[keep], pitch[keep], velocity[keep]
        off = np.maximum(off, on + 1)
        # Within each pitch, in time order, a note ends no later than the next onset of that pitch.
        # Two stable sorts (= lexsort by pitch, then step, then file order): timsort by step is
        # fast on notes that come nearly in time order, and radix sort by an 8-bit pitch is linear.
        by_step = np.argsort(on, kind="stable")
        by_pitch = by_step[np.argsort(pitch[by_step].astype(np.uint8), kind="stable")]
        p_sorted, on_sorted = pitch[by_pitch], on[by_pitch]
        clipped = off[by_pitch]
        same_pitch_next = p_sorted[1:] == p_sorted[:-1]
        clipped[:-1] = np.where(same_pitch_next, np.minimum(clipped[:-1], on_sorted[1:]), clipped[:-1])
        off[by_pitch] = clipped
        valid = off > on
        num_dropped = len(on) - int(valid.sum())
        if num_dropped:
            on, off, pitch, velocity = on[valid], off[valid], pitch[valid], velocity[valid]
        # Keys are unique once repeats are dropped; notes come nearly in time order, which timsort
        # ("stable") sorts several times faster than quicksort.
        order = np.argsort(on * NUM_PITCHES + pitch, kind="stable")
        vbin = velocity[order] * self.num_velocity_bins // 128
        return on[order], off[order], pitch[order], vbin, num_dropped

    def encode_notes(self, notes: PerformanceNotes, add_special_tokens: bool = True) -> np.ndarray:
        """Vectorized event encoding of note arrays; returns an int64 array of ids."""
        on, off, pitch, vbin, _ = self.quantize_notes(notes)
        n = len(on)
        # Note-on groups ([VELOCITY] NOTE_ON) come in (on, pitch) order already; NOTE_OFFs are
        # sorted by (off, pitch) and merged in front of the groups that start at the same step.
        vel_change = np.ones(n, bool)
        vel_change[1:] = vbin[1:] != vbin[:-1]
        off_order = np.argsort(off * NUM_PITCHES + pitch, kind="stable")  # nearly sorted already
        off, off_pitch = off[off_order], pitch[off_order]
        group_len = 1 + vel_change
        tokens_before_group = np.zeros(n + 1, np.int64)
        np.cumsum(group_len, out=tokens_before_group[1:])
        # Both step arrays are sorted: one stable merge (timsort sees two runs, O(n)) tells for
        # each NOTE_ON how many NOTE_OFFs come at or before it, and for each NOTE_OFF how many
        # groups start strictly before it (offs sort first among equal steps).
        merged = np.empty(2 * n, np.int64)
        merged[np.argsort(np.concatenate((off, on)), kind="stable")] = np.arange(2 * n)
        offs_before_group = merged[n:] - np.arange(n)
        groups_before_off = merged[:n] - np.arange(n)
        on_pos = tokens_before_group[:-1] + offs_before_group + vel_change  # NOTE_ON after its VELOCITY
        off_pos = np.arange(n) + tokens_before_group[groups_before_off]
        num_events = int(tokens_before_group[-1]) + n  # velocity + note-on tokens, then note-offs
        token = np.empty(num_events, np.int64)
        time = np.empty(num_events, np.int64)
        token[on_pos] = self.note_on_offset + pitch
        time[on_pos] = on
        vel_pos = on_pos[vel_change] - 1
        token[vel_pos] = self.velocity_offset + vbin[vel_change]
        time[vel_pos] = on[vel_change]
        token[off_pos] = self.note_off_offset + off_pitch
        time[off_pos] = off

        # Gaps between events become TIME_SHIFT runs: full max shifts, then the remainder.
        delta = np.empty(num_events, np.int64)
        if num_events:
            delta[0] = time[0]
            np.subtract(time[1:], time[:-1], out=delta[1:])
        shifts_per_event = -(-delta // self.max_time_shift)
        shifts_so_far = np.cumsum(shifts_per_event)
        num_shifts = int(shifts_so_far[-1]) if num_events else 0
        special = 1 if add_special_tokens else 0
        # Every slot starts as the longest shift; events and the last (partial) shift of each
        # gap are then written at their computed positions.
        out = np.full(num_events + num_shifts + 2 * special, self.time_shift_offset - 1 + self.max_time_shift)
        event_pos = shifts_so_far + np.arange(special, num_events + special)
        out[event_pos] = token
        shifted = np.flatnonzero(delta)
        out[event_pos[shifted] - 1] = self.time_shift_offset + (delta[shifted] - 1) % self.max_time_shift
        if special:
            out[0] = self.bos_token_id
            out[-1] = self.eos_token_id
        return self.merge(out) if self.bpe_merges else out

    # ------------------------------------------------------------------ ids -> MIDI
    def note_events(self, ids) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Positions, pitches and is-NOTE_ON flags of the NOTE_ON / NOTE_OFF events in a sequence of
        base ids (`base_ids` expands merged ones)."""
        ids = as_id_array(ids)
        pos = np.flatnonzero((ids >= self.note_on_offset) & (ids < self.time_shift_offset))
        return pos, (ids[pos] - self.note_on_offset) % NUM_PITCHES, ids[pos] < self.note_off_offset

    def ids_to_notes(self, ids) -> PerformanceNotes:
        """Decode any id sequence into notes (seconds). Never raises on content.

        Specials, pads and unknown ids are skipped; a NOTE_OFF without a sounding note is
        ignored; a NOTE_ON of a sounding pitch ends it; notes open at the end are closed there.
        """
        ids = self.base_ids(ids)
        ids = ids[(ids >= self.note_on_offset) & (ids < self.base_vocab_size)]
        is_shift = (ids >= self.time_shift_offset) & (ids < self.velocity_offset)
        steps = np.cumsum(np.where(is_shift, ids - self.time_shift_offset + 1, 0))
        end_step = int(steps[-1]) if len(steps) else 0

        is_velocity = ids >= self.velocity_offset
        last_velocity_pos = np.maximum.accumulate(np.where(is_velocity, np.arange(len(ids)), -1))
        default_bin = 64 * self.num_velocity_bins // 128
        vbin = np.where(
            last_velocity_pos >= 0, ids[np.maximum(last_velocity_pos, 0)] - self.velocity_offset, default_bin
        )

        pos, pitch, is_on = self.note_events(ids)
        # Each NOTE_ON sounds until the next NOTE_ON/NOTE_OFF of the same pitch, else until the end.
        order = np.lexsort((pos, pitch))
        pos, pitch, starts_note = pos[order], pitch[order], is_on[order]
        has_next = np.r_[pitch[1:] == pitch[:-1], False]
        end = np.where(has_next, np.r_[steps[pos[1:]], 0], end_step)
        start, end, pitch, note_pos = (
            steps[pos][starts_note],
            end[starts_note],
            pitch[starts_note],
            pos[starts_note],
        )
        audible = end > start
        start, end, pitch, note_pos = start[audible], end[audible], pitch[audible], note_pos[audible]
        order = np.lexsort((pitch, start))
        start, end, pitch, note_pos = start[order], end[order], pitch[order], note_pos[order]
        bin_width = 128 / self.num_velocity_bins
        velocity = np.clip(np.floor((vbin[note_pos] + 0.5) * bin_width), 1, 127).astype(np.int64)
        ms = self.time_resolution_ms
        return PerformanceNotes(start * ms / 1000.0, end * ms / 1000.0, pitch, velocity)

    def decode_midi(self, ids):
        """Decode ids (list, numpy array or tensor; 2-D gives a list) into a ``symusic.Score``.

        Any sequence decodes without an exception: specials and pads are skipped, NOTE_OFFs
        without a sounding note are ignored and notes still open at the end are closed.
        """
        ids, several = id_rows(ids)
        if several:
            return [self.decode_midi(row) for row in ids]
        return self.notes_to_score(self.ids_to_notes(ids))

    def notes_to_score(self, notes: PerformanceNotes):
        """One piano track, 120 qpm, 1 tick = 1 ms."""
        sm = _require_symusic()
        ms_per_tick = 60_000.0 / (_QPM * _TICKS_PER_QUARTER)
        start = np.rint(np.asarray(notes.onset, np.float64) * 1000.0 / ms_per_tick)
        end = np.rint(np.asarray(notes.offset, np.float64) * 1000.0 / ms_per_tick)
        # MIDI ticks are int32 here (about 596 hours at 1 ms): later notes are dropped, not wrapped.
        limit = np.iinfo(np.int32).max
        keep = start < limit
        start, end = start[keep].astype(np.int32), np.minimum(end[keep], limit).astype(np.int32)
        notes = PerformanceNotes(*(np.asarray(field)[keep] for field in notes))
        score = sm.Score(_TICKS_PER_QUARTER)
        score.tempos.append(sm.Tempo(0, qpm=_QPM))
        track = sm.Track(name="Piano", program=0, is_drum=False)
        track.notes = sm.Note.from_numpy(
            start,
            np.maximum(end - start, 1).astype(np.int32),
            np.asarray(notes.pitch, np.int8),
            np.asarray(notes.velocity, np.int8),
        )
        score.tracks.append(track)
        return score

    def write_midi(self, ids, path: str | os.PathLike) -> str:
        """Decode ids and write a standard MIDI file; returns the path."""
        path = os.fspath(path)
        self.decode_midi(ids).dump_midi(path)
        return path


__all__ = [
    "MAX_MIDI_BYTES",
    "MAX_PIECE_NOTES",
    "MAX_PIECE_SECONDS",
    "MidiReadError",
    "MidiTokenizer",
    "PerformanceNotes",
    "PieceTooLongError",
    "load_score",
    "read_score",
    "score_to_notes",
    "seconds_to_steps",
    "tick_to_seconds",
]
