"""What hf_music's code asks of a music tokenizer, so that a new vocabulary is one class.

    isinstance(tokenizer, MusicTokenizer)   # MidiTokenizer (performance events), MiditokTokenizer (REMI, TSD, ...)

Both tokenizers are ``transformers`` tokenizers (``bos_token_id``, ``save_pretrained``, ...) and
provide these members without importing this module (structural typing: the tokenizer files are
copied into checkpoints and import nothing of hf_music). Generation, training, evaluation, the
command line and the Space call these members instead of asking which class they hold.
"""

from __future__ import annotations

import os
from typing import Protocol, runtime_checkable

from .tokenization_music_transformer import PerformanceNotes


@runtime_checkable
class MusicTokenizer(Protocol):
    """A vocabulary of music: MIDI <-> ids, notes, seconds, and how generation and training use it.

    Attributes:
        sampling_controls: the ``generate_ids`` settings that steer this vocabulary's sampling:
            transformers' ("temperature", "top_k", "top_p", "min_p"), and with "constrained" the
            performance grammar and its settings ("pitch_temperature", "max_polyphony", ...), whose
            custom_generate/ a checkpoint then carries (see `offers_grammar`).
        augmentation_stage: where training augmentation happens: "windows" (each window drawn
            from the ids is transposed and time-stretched, `hf_music.windows`) or "corpus" (the
            train split is cut and transposed as Scores when read, `hf_music.miditok_data`).
        time_step: seconds per step of the clock the ids carry (``steps_of_id``, counted by
            `hf_music.generation.time_steps` while sampling), or None: the music's length is
            known only by decoding (`seconds`).
        keeps_instruments: whether tracks and their programs survive encoding (else one part).
        vocabulary_description: the vocabulary in words ("the performance-event vocabulary (391 ids; ...)").
    """

    bos_token_id: int
    eos_token_id: int
    pad_token_id: int
    sampling_controls: tuple[str, ...]
    augmentation_stage: str
    time_step: float | None
    keeps_instruments: bool
    vocabulary_description: str

    def encode_midi(
        self, midi, add_special_tokens: bool = True, max_seconds: float | None = None, name: str | None = None
    ) -> list[int] | list[list[int]]:
        """Ids of a MIDI path, bytes or Score (a list gives a list); ``max_seconds`` keeps the notes
        that start before it; MidiReadError (naming the file) for unreadable input."""

    def decode_midi(self, ids):
        """A ``symusic.Score`` of any ids (a 2-D input gives a list); never raises on content."""

    def write_midi(self, ids, path: str | os.PathLike) -> str:
        """Decode ids into a standard MIDI file; returns the path."""

    def midi_to_notes(self, midi, name: str | None = None) -> PerformanceNotes:
        """The notes of a MIDI input that this vocabulary keeps, tracks merged, in seconds."""

    def ids_to_notes(self, ids) -> PerformanceNotes:
        """The notes the ids decode to, tracks merged, in seconds (statistics, audio, piano roll)."""

    def seconds(self, ids) -> float:
        """Seconds of music in the ids (what stopping by seconds and a prompt's length use)."""


def offers_grammar(tokenizer: MusicTokenizer) -> bool:
    """Whether grammar-aware sampling (`hf_music.grammar`, a checkpoint's custom_generate/) reads this vocabulary."""
    return "constrained" in tokenizer.sampling_controls


__all__ = ["MusicTokenizer", "offers_grammar"]
