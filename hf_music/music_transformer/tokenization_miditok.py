"""Any miditok vocabulary (REMI, TSD, MIDILike, Structured, MMM) as a ``transformers`` tokenizer.

    tok = MiditokTokenizer.from_miditok("REMI", use_programs=True)   # a name and miditok config options
    tok = MiditokTokenizer.from_miditok(miditok.TSD(config))          # or an existing miditok tokenizer
    ids = tok.encode_midi("song.mid")                                 # <bos> ... <eos>, one stream
    tok.decode_midi(ids)                                              # a symusic.Score, one track per program
    tok.save_pretrained("folder")   # tokenizer_config.json, miditok_params.json (miditok's own), tokenizer.json

The vocabulary is miditok's: ids and token strings are exactly those of the wrapped tokenizer,
and the specials are miditok's ``PAD_None``, ``BOS_None`` and ``EOS_None``. Tracks: with
``use_programs=True`` miditok writes every track into one stream with ``Program_p`` tokens and
merges tracks of the same program; MMM writes the tracks one after another (``Track_Start``
... ``Track_End``) and keeps tracks of the same program apart. Without programs every non-drum
track is merged into one part before encoding (one stream is what a causal LM learns).
Vocabularies with several embeddings per step (CPWord, Octuple, MuMIDI) and trained (BPE)
miditok tokenizers are refused with a message.

This file is copied into checkpoints by ``save_pretrained`` for ``trust_remote_code``: relative
imports only, miditok and symusic imported inside ``try``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from transformers import PreTrainedTokenizer

from .tokenization_music_transformer import (
    MidiReadError,
    PerformanceNotes,
    WordVocabulary,
    _describe,
    as_id_array,
    check_piece_size,
    id_rows,
    load_score,
    score_to_notes,
    tick_to_seconds,
)

MIDITOK_PARAMS_FILE = "miditok_params.json"
# Single-stream miditok tokenizations a causal LM can learn (one id per position).
VOCABULARIES = ("REMI", "TSD", "MIDILike", "Structured", "MMM")
# miditok spends tokens on every bar, empty or not, and resamples time to int32 ticks: two minutes
# over 2**28 quarter notes (a tempo of 1 us per quarter) overflowed symusic's resampling. The bound
# is 5.6 hours at 300 quarters a minute (the pieces' seconds and notes are bounded as well).
MAX_PIECE_QUARTERS = 100_000


def _require_miditok():
    # Imported when first needed (importing hf_music stays fast), inside `try` for transformers' import check.
    try:
        import miditok
    except ImportError as err:
        raise ImportError("MiditokTokenizer needs the 'miditok' package: pip install miditok") from err
    return miditok


def parse_options(text: str | None) -> dict:
    """miditok config options from "use_programs=true,programs=[0,33]" (values read as JSON, else text)."""
    options, items, depth, start = {}, [], 0, 0
    text = text or ""
    for position, char in enumerate(text + ","):  # commas inside [...] or {...} belong to the value
        depth += (char in "[{") - (char in "]}")
        if char == "," and depth == 0:
            items.append(text[start:position])
            start = position + 1
    for item in items:
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"tokenizer option {item!r} is not KEY=VALUE")
        try:
            options[key.strip()] = json.loads(value.strip())
        except json.JSONDecodeError:
            options[key.strip()] = value.strip()
    return options


def _build_miditok(tokenization: str, options: dict):
    mt = _require_miditok()
    if tokenization not in VOCABULARIES:
        raise ValueError(
            f"unknown miditok vocabulary {tokenization!r}: choose one of {', '.join(VOCABULARIES)}"
        )
    if tokenization == "MMM":
        options = {"base_tokenizer": "REMI", **options}
    return getattr(mt, tokenization)(mt.TokenizerConfig(**options))


def _load_miditok(params_file):
    """A miditok tokenizer from its own params JSON; only the vocabularies listed above (no getattr on file data)."""
    mt = _require_miditok()
    tokenization = json.loads(Path(params_file).read_text(encoding="utf-8")).get("tokenization")
    if tokenization not in VOCABULARIES:
        raise ValueError(f"{params_file}: miditok tokenization {tokenization!r} is not one of {VOCABULARIES}")
    return getattr(mt, tokenization)(params=params_file)


class MiditokTokenizer(WordVocabulary, PreTrainedTokenizer):
    """A miditok tokenizer behind the ``transformers`` tokenizer API and hf_music's MIDI interface.

    Make one with :meth:`from_miditok`; ``from_pretrained`` reads ``miditok_params.json`` (the
    file miditok's ``save`` writes). The text form is space-separated miditok tokens:
    ``tok("Bar_None Position_0 Pitch_60")``. MIDI goes through :meth:`encode_midi`,
    :meth:`decode_midi` and :meth:`write_midi`, as with ``MidiTokenizer``.
    """

    vocab_files_names = {"params_file": MIDITOK_PARAMS_FILE}
    model_input_names = ["input_ids", "attention_mask"]
    # hf_music's music-tokenizer interface (hf_music.music_tokenizer.MusicTokenizer) beyond MIDI <-> ids:
    # transformers' warpers only (the performance grammar reads performance events' ids).
    sampling_controls = ("temperature", "top_k", "top_p", "min_p")
    # The train split is cut into pieces and transposed as Scores when the corpus is read, by
    # miditok's own functions (hf_music.miditok_data), not per window.
    augmentation_stage = "corpus"
    # No clock in the ids: seconds of music are known by decoding (`seconds`).
    time_step = None

    def __init__(self, params_file: str | None = None, miditok_tokenizer=None, **kwargs):
        if miditok_tokenizer is None:
            if params_file is None:
                raise ValueError(
                    "MiditokTokenizer needs a miditok tokenizer: use MiditokTokenizer.from_miditok"
                )
            miditok_tokenizer = _load_miditok(params_file)
        name = type(miditok_tokenizer).__name__
        if miditok_tokenizer.is_multi_voc:
            raise ValueError(
                f"miditok {name} has several vocabularies (one embedding each): not a causal LM's"
            )
        if miditok_tokenizer.is_trained:
            raise ValueError(f"miditok {name} is trained (BPE/Unigram): only base vocabularies are supported")
        if name not in VOCABULARIES:
            raise ValueError(f"miditok {name} is not supported: use one of {', '.join(VOCABULARIES)}")
        self.miditok = miditok_tokenizer
        self._token_to_id = dict(miditok_tokenizer.vocab)
        self._id_to_token = sorted(self._token_to_id, key=self._token_to_id.get)
        missing = {"PAD_None", "BOS_None", "EOS_None"} - set(self._token_to_id)
        if missing:
            raise ValueError(
                f"miditok {name} lacks the special tokens {sorted(missing)} (config.special_tokens)"
            )
        kwargs.setdefault("special_tokens_pattern", "bos_eos")  # not saved by transformers: set every time
        kwargs.update(pad_token="PAD_None", bos_token="BOS_None", eos_token="EOS_None")
        super().__init__(**kwargs)

    @classmethod
    def from_miditok(cls, tokenization, **options) -> MiditokTokenizer:
        """Wrap a miditok tokenizer object, or build one: a vocabulary name and TokenizerConfig options."""
        if isinstance(tokenization, str):
            return cls(miditok_tokenizer=_build_miditok(tokenization, options))
        if options:
            raise ValueError("options go into a new miditok tokenizer; this one is built already")
        return cls(miditok_tokenizer=tokenization)

    # ------------------------------------------------------------------ transformers API
    def _convert_token_to_id(self, token: str) -> int:
        try:
            return self._token_to_id[token]
        except KeyError:
            raise ValueError(f"unknown miditok token {token!r} for {self.vocabulary_name}") from None

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        return " ".join(tokens)

    def save_vocabulary(self, save_directory: str, filename_prefix: str | None = None) -> tuple[str, ...]:
        """miditok's own params JSON (what miditok.REMI(params=...) reads) and a word-level tokenizer.json."""
        prefix = f"{filename_prefix}-" if filename_prefix else ""
        params = Path(save_directory) / f"{prefix}{MIDITOK_PARAMS_FILE}"
        self.miditok.save(params)
        return (str(params), self.save_tokenizer_json(Path(save_directory) / f"{prefix}tokenizer.json"))

    def save_tokenizer_json(self, path) -> str:
        """The text side as a 🤗 tokenizers file: word level over miditok's tokens, <bos>/<eos> added."""
        from tokenizers import Tokenizer, models, pre_tokenizers, processors

        fast = Tokenizer(models.WordLevel(dict(self._token_to_id), unk_token=None))
        fast.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        specials = [self.pad_token, self.bos_token, self.eos_token]
        fast.add_special_tokens(specials)
        fast.post_processor = processors.TemplateProcessing(
            single=f"{self.bos_token} $A {self.eos_token}",
            special_tokens=[(t, self._token_to_id[t]) for t in (self.bos_token, self.eos_token)],
        )
        fast.save(os.fspath(path))
        return os.fspath(path)

    # ------------------------------------------------------------------ facts about the vocabulary
    @property
    def vocabulary_name(self) -> str:
        """e.g. "REMI (programs)" or "MMM (REMI)": what the CLI prints."""
        name = type(self.miditok).__name__
        if name == "MMM":
            return f"MMM ({self.miditok.config.additional_params.get('base_tokenizer')})"
        return f"{name} (programs)" if self.miditok.config.use_programs else name

    @property
    def keeps_instruments(self) -> bool:
        """True when tracks (and their General MIDI programs) survive encoding."""
        return bool(self.miditok.config.use_programs)

    @property
    def vocabulary_description(self) -> str:
        """The vocabulary in words, for the line saying what a training run does."""
        tracks = "tracks and their programs kept" if self.keeps_instruments else "tracks merged into one part"
        return f"the miditok {self.vocabulary_name} vocabulary ({self.vocab_size} ids; {tracks})"

    # ------------------------------------------------------------------ MIDI -> ids
    def prepare_score(self, score):
        """The Score miditok encodes: without programs, every non-drum track merged into one part."""
        if self.miditok.one_token_stream:
            return score
        mt = _require_miditok()
        score = score.copy()
        melodic = [track for track in score.tracks if not track.is_drum and track.note_num()]
        score.tracks = [mt.utils.merge_tracks(melodic)] if melodic else []
        return score

    def encode_score(self, score, add_special_tokens: bool = True) -> list[int]:
        """Token ids of a symusic Score (already read)."""
        score = self.prepare_score(score)
        if score.note_num() == 0:
            ids = []
        else:
            sequence = self.miditok.encode(score)
            ids = list((sequence if self.miditok.one_token_stream else sequence[0]).ids)
        return [self.bos_token_id, *ids, self.eos_token_id] if add_special_tokens else ids

    def encode_midi(
        self, midi, add_special_tokens: bool = True, max_seconds: float | None = None, name: str | None = None
    ) -> list[int] | list[list[int]]:
        """Encode a MIDI path, raw bytes or ``symusic.Score`` (or a list of them) into token ids.

        ``max_seconds`` keeps only the notes that start before that time (a prompt's first
        seconds). Raises MidiReadError (a ValueError naming the file) for unreadable input.
        """
        if isinstance(midi, (list, tuple)):
            return [self.encode_midi(m, add_special_tokens, max_seconds) for m in midi]
        score = self.load_score(midi, name)
        if max_seconds is not None:
            score = first_seconds(score, max_seconds)
        try:
            return self.encode_score(score, add_special_tokens)
        except (ValueError, IndexError, KeyError, OverflowError) as err:  # miditok's complaints about content
            raise MidiReadError(f"{name or _describe(midi)}: miditok cannot encode it ({err})") from err

    def load_score(self, midi, name: str | None = None):
        """`load_score`, and PieceTooLongError naming the file beyond MAX_PIECE_QUARTERS quarter notes."""
        score = load_score(midi, name=name)
        check_piece_size(score, name or _describe(midi), max_quarters=MAX_PIECE_QUARTERS)
        return score

    def midi_to_notes(self, midi, name: str | None = None) -> PerformanceNotes:
        """The notes miditok keeps of a MIDI input, all tracks merged, in seconds (for statistics)."""
        return self.ids_to_notes(self.encode_midi(midi, name=name))

    # ------------------------------------------------------------------ ids -> MIDI
    def content_ids(self, ids) -> list[int]:
        """The ids miditok decodes: specials and ids outside the vocabulary dropped."""
        ids = as_id_array(ids)
        # Only pad/bos/eos: MMM's Track_Start/Track_End are miditok "special tokens" that carry tracks.
        specials = [self.pad_token_id, self.bos_token_id, self.eos_token_id]
        keep = (ids >= 0) & (ids < self.vocab_size) & ~np.isin(ids, specials)
        return ids[keep].tolist()

    def decode_midi(self, ids):
        """Decode ids (list, numpy array or tensor; 2-D gives a list) into a ``symusic.Score``.

        One track per program (MMM: per track written); specials are skipped. miditok
        skips tokens that break its grammar; a sequence it still cannot read decodes to an
        empty Score rather than an exception, as ``MidiTokenizer.decode_midi`` never raises.
        """
        ids, several = id_rows(ids)
        if several:
            return [self.decode_midi(row) for row in ids]
        content = self.content_ids(ids)
        if not content:
            return self._empty_score()
        try:
            return self.miditok.decode(content if self.miditok.one_token_stream else [content])
        except (ValueError, IndexError, KeyError, TypeError):
            return self._empty_score()

    def _empty_score(self):
        score = self.miditok.decode(
            [self.bos_token_id] if self.miditok.one_token_stream else [[self.bos_token_id]]
        )
        score.tracks = []
        return score

    def ids_to_notes(self, ids) -> PerformanceNotes:
        """Every non-drum note of the decoded ids, tracks merged, in seconds (statistics, audio, the Space)."""
        return score_to_notes(self.decode_midi(ids), sustain_pedal=False)

    def write_midi(self, ids, path: str | os.PathLike) -> str:
        """Decode ids and write a standard MIDI file; returns the path."""
        path = os.fspath(path)
        self.decode_midi(ids).dump_midi(path)
        return path

    def seconds(self, ids) -> float:
        """Seconds of music the ids decode to (the end of the last note)."""
        notes = self.ids_to_notes(ids)
        return float(notes.offset.max(initial=0.0))


def first_seconds(score, seconds: float):
    """The Score's notes that start before ``seconds`` (its tempo map followed), others dropped."""
    score = score.to("tick") if hasattr(score, "to") else score
    to_seconds = tick_to_seconds(score)
    # The first tick at or after ``seconds``, by bisection (time never runs backwards): no array
    # per tick, which a note at tick 2**28 would make 2 GB.
    low, high = 0, score.end() + 2
    while low < high:
        middle = (low + high) // 2
        low, high = (middle + 1, high) if to_seconds(middle) < seconds else (low, middle)
    return score.clip(0, low, clip_end=False)


__all__ = [
    "MAX_PIECE_QUARTERS",
    "MIDITOK_PARAMS_FILE",
    "VOCABULARIES",
    "MiditokTokenizer",
    "first_seconds",
    "parse_options",
]
