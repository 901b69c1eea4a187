"""Corpora for miditok vocabularies: miditok's own splitting and augmentation, then its encoding.

    pieces, report = tokenize_with_miditok(raw_split, tokenizer, max_seq_len=512, augment=True)

For a `MiditokTokenizer` the train split is cut with ``miditok.utils.split_score_per_note_density``
(chunks of whole bars that fit ``max_seq_len`` tokens, one bar of overlap, as miditok's
``split_files_for_training`` does) and augmented with
``miditok.data_augmentation.augment_score_multiple_offsets`` (every pitch offset of
``PITCH_OFFSETS`` that keeps each program within its tessitura), each chunk and copy being one
piece. The id-level tricks of `hf_music.windows` (transposing NOTE_ON ids, stretching
performance time) only apply to performance events. Bad files are skipped, counted and named.
"""

from __future__ import annotations

import numpy as np

from .data import TokenizationReport
from .music_transformer.tokenization_miditok import MiditokTokenizer, _require_miditok
from .music_transformer.tokenization_music_transformer import MidiReadError

# Transpositions of the train split, as the performance pipeline's +-3 semitones.
PITCH_OFFSETS = (-3, -2, -1, 1, 2, 3)


def read_scores(rows, tokenizer: MiditokTokenizer, report: TokenizationReport) -> list:
    """(name, Score) of every readable file of a split with notes; the others skipped and counted."""
    scores = []
    for name, data in zip(rows["midi_filename"], rows["midi"], strict=True):
        try:
            score = tokenizer.load_score(data, name=name)
            if score.note_num() == 0:
                raise MidiReadError(f"{name}: a valid MIDI file without notes")
            scores.append((name, score))
        except MidiReadError as err:
            report.skipped.append((name, str(err).removeprefix(f"{name}: ")))
    return scores


def tokens_per_note(tokenizer: MiditokTokenizer, scores) -> float:
    """Mean tokens per note over the files (miditok's get_average_num_tokens_per_note, on Scores in memory)."""
    ratios = [len(tokenizer.encode_score(s, add_special_tokens=False)) / s.note_num() for _, s in scores]
    return float(np.mean(ratios))


def split_and_augment(
    score, tokenizer: MiditokTokenizer, max_seq_len: int | None, average: float, augment: bool
):
    """The Scores of one file that become pieces: miditok's chunks, and their transposed copies."""
    mt = _require_miditok()
    score = tokenizer.prepare_score(score)
    chunks = [score]
    if max_seq_len is not None:
        # Two ids of each piece are <bos> and <eos>.
        chunks = mt.utils.split_score_per_note_density(score, max_seq_len - 2, average, num_overlap_bars=1)
    if not augment:
        return chunks
    copies = []
    for chunk in chunks:
        copies.append(chunk)
        shifted = mt.data_augmentation.augment_score_multiple_offsets(
            chunk, pitch_offsets=list(PITCH_OFFSETS), velocity_offsets=[], duration_offsets=[]
        )
        copies.extend(augmented for _, augmented in shifted)
    return copies


def tokenize_with_miditok(
    rows,
    tokenizer: MiditokTokenizer,
    max_seq_len: int | None = None,
    augment: bool = False,
    name: str = "split",
) -> tuple[list[np.ndarray], TokenizationReport]:
    """int32 id pieces (<bos> ... <eos>) of a split's rows (``midi_filename``, ``midi`` bytes)."""
    report = TokenizationReport()
    scores = read_scores(rows, tokenizer, report)
    report.files = len(scores)
    average = tokens_per_note(tokenizer, scores) if scores and max_seq_len is not None else 0.0
    pieces = []
    for file, score in scores:
        report.seconds += score.to("second").end()
        try:
            for part in split_and_augment(score, tokenizer, max_seq_len, average, augment):
                if part.note_num():
                    pieces.append(np.asarray(tokenizer.encode_score(part), np.int32))
                    report.notes += part.note_num()
        except (ValueError, IndexError, KeyError) as err:  # miditok's complaints about one file
            report.skipped.append((file, f"miditok cannot encode it ({err})"))
    report.pieces, report.tokens = len(pieces), int(sum(len(p) for p in pieces))
    print(f"{name}: {report.summary()}")
    return pieces, report


__all__ = ["PITCH_OFFSETS", "tokenize_with_miditok"]
