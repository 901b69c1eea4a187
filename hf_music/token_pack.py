"""Tokenized corpora in one compact, checksummed file: what a GPU machine without MIDI tools trains on.

    pack = TokenPack.from_pieces({"train": [ids, ...], "validation": [...]}, info={...})
    pack.save("maestro-v3.0.0.tokens.npz")          # uint16 ids, zlib-compressed
    pack = TokenPack.load("maestro-v3.0.0.tokens.npz")  # sha256 of every array checked
    pack.pieces("train")                             # list of int32 arrays, one per piece

Only numpy is needed to read a pack: no `datasets`, no `symusic`. `load_corpus` gives a
TokenPack for any source (MAESTRO, a MIDI folder, a pack file): train.py and evaluate.py read
corpora through it, and `scripts/prepare_data.py` saves one.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

FORMAT = "hf_music.token_pack/1"


class TokenPackError(ValueError):
    """A token pack is missing, damaged or does not match what it claims; the message names the file."""


def _sha256(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


@dataclass
class TokenPack:
    """Splits of token ids, each one flat uint16 array cut into pieces by offsets.

    ``tokens[split]`` holds every piece of the split back to back, ``offsets[split]`` the
    piece boundaries (length pieces + 1). ``info`` says where the ids came from: the
    tokenizer's arguments, the corpus, its licence, file names per split.
    """

    tokens: dict[str, np.ndarray]
    offsets: dict[str, np.ndarray]
    info: dict = field(default_factory=dict)

    @classmethod
    def from_pieces(cls, splits: dict[str, list], info: dict | None = None) -> TokenPack:
        tokens, offsets = {}, {}
        for name, pieces in splits.items():
            arrays = [np.asarray(ids) for ids in pieces]
            if any(a.size and (a.min() < 0 or a.max() > np.iinfo(np.uint16).max) for a in arrays):
                raise ValueError(f"split {name!r}: ids must lie in 0..65535 to be packed as uint16")
            lengths = np.array([a.size for a in arrays], np.int64)
            offsets[name] = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
            tokens[name] = np.concatenate(arrays).astype(np.uint16) if arrays else np.zeros(0, np.uint16)
        return cls(tokens, offsets, dict(info or {}))

    @property
    def splits(self) -> list[str]:
        return list(self.tokens)

    def pieces(self, split: str) -> list[np.ndarray]:
        """The split's pieces as int32 arrays (copies: safe to keep while the pack goes away)."""
        if split not in self.tokens:
            raise KeyError(f"the token pack has no {split!r} split (it has {', '.join(self.splits)})")
        return np.split(self.tokens[split].astype(np.int32), self.offsets[split][1:-1])

    def save(self, path: str | os.PathLike) -> Path:
        """Write atomically (a temporary name, then rename); every array's sha256 goes into the info."""
        path = Path(path)
        arrays = {}
        for name in self.splits:
            arrays[f"{name}.tokens"] = self.tokens[name]
            arrays[f"{name}.offsets"] = self.offsets[name]
        info = {**self.info, "format": FORMAT, "sha256": {k: _sha256(v) for k, v in arrays.items()}}
        info_bytes = np.frombuffer(json.dumps(info, indent=1).encode(), np.uint8)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as handle:
            np.savez_compressed(handle, info=info_bytes, **arrays)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        self.info = info
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> TokenPack:
        """Read a pack and check every array against the sha256 recorded when it was written."""
        path = Path(path)
        if not path.is_file():
            raise TokenPackError(f"token pack {path} does not exist (write one with scripts/prepare_data.py)")
        try:
            with np.load(path, allow_pickle=False) as archive:
                arrays = {name: archive[name] for name in archive.files}
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
            raise TokenPackError(f"{path} is not a readable token pack: {err}") from err
        try:
            info = json.loads(arrays.pop("info").tobytes())
        except (KeyError, ValueError) as err:
            raise TokenPackError(f"{path} has no valid info record: {err}") from err
        if info.get("format") != FORMAT:
            raise TokenPackError(f"{path}: format {info.get('format')!r}, expected {FORMAT!r}")
        expected = info.get("sha256", {})
        if set(expected) != set(arrays):
            raise TokenPackError(
                f"{path}: arrays {sorted(arrays)} do not match its record {sorted(expected)}"
            )
        for name, array in arrays.items():
            if _sha256(array) != expected[name]:
                raise TokenPackError(f"{path}: checksum mismatch in {name}; the file is damaged")
        names = sorted({name.rsplit(".", 1)[0] for name in arrays})
        pack = cls(
            {n: arrays[f"{n}.tokens"] for n in names}, {n: arrays[f"{n}.offsets"] for n in names}, info
        )
        pack.check(path)
        return pack

    def check(self, path: str | os.PathLike) -> None:
        """Refuse ids outside the recorded vocabulary and offsets that do not cut the ids into
        pieces: the checksums catch damage, not a pack rewritten with new checksums (an id out of
        range stops training with a device assert on a GPU; bad offsets repeat or drop tokens)."""
        vocab_size = self.info.get("vocab_size")
        for name in self.splits:
            tokens, offsets = self.tokens[name], self.offsets[name]
            if (
                tokens.ndim != 1
                or offsets.ndim != 1
                or offsets.size == 0
                or {tokens.dtype.kind, offsets.dtype.kind} - {"i", "u"}
            ):
                raise TokenPackError(
                    f"{path}: split {name!r} is not a flat array of integer ids with integer offsets"
                )
            if tokens.size and int(tokens.min()) < 0:
                raise TokenPackError(f"{path}: split {name!r} holds a negative id {int(tokens.min())}")
            if offsets[0] != 0 or offsets[-1] != tokens.size or np.any(np.diff(offsets) < 0):
                raise TokenPackError(
                    f"{path}: split {name!r} has offsets that do not run from 0 up to its {tokens.size} ids"
                )
            if isinstance(vocab_size, int) and tokens.size and int(tokens.max()) >= vocab_size:
                raise TokenPackError(
                    f"{path}: split {name!r} holds id {int(tokens.max())}, beyond its vocabulary of {vocab_size}"
                )


MAESTRO_LICENSE = "cc-by-nc-sa-4.0"


def file_sha256(path: Path) -> str | None:
    """sha256 of a file's bytes, None for a folder."""
    if not path.is_file():
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def maestro_name(source: str, version: str) -> str:
    """ "MAESTRO v3.0.0" for the official folder or zip; otherwise the source's own name, so a
    subset with its own splits (maestro-mini) is never reported as MAESTRO itself."""
    official = {f"maestro-{version}", f"maestro-{version}.zip", f"maestro-{version}-midi.zip"}
    return f"MAESTRO {version}" if source in official else f"{source} (MAESTRO {version} layout)"


def load_corpus(
    tokenizer,
    *,
    maestro=None,
    midi_dir=None,
    tokens_file=None,
    splits: tuple[str, ...] | None = None,
    maestro_version: str = "v3.0.0",
    validation_fraction: float = 0.1,
    test_fraction: float = 0.0,
    seed: int = 0,
    license: str | None = None,
    num_proc: int | None = None,
    max_seq_len: int | None = None,
    augment: bool = False,
) -> TokenPack:
    """A tokenized corpus from exactly one source, as a TokenPack (in memory).

    maestro: an extracted MAESTRO folder or its zip (path or URL), with MAESTRO's own splits.
    midi_dir: any folder of MIDI files, split by a hash of each path (`hf_music.data.split_of`).
    tokens_file: a pack written by `TokenPack.save`; checked against the tokenizer's vocabulary.
    splits: only these splits (default: all). MIDI is tokenized with `datasets`, imported only
    here; bad files are skipped, counted and named in ``info["skipped"]``.
    max_seq_len, augment: for a tokenizer whose ``augmentation_stage`` is "corpus" (MiditokTokenizer)
    only, the train split is cut into pieces of at most max_seq_len tokens and augmented with
    miditok's own functions (`hf_music.miditok_data`).
    """
    if sum(x is not None for x in (maestro, midi_dir, tokens_file)) != 1:
        raise ValueError("give exactly one of maestro, midi_dir, tokens_file")
    if tokens_file is not None:
        pack = TokenPack.load(tokens_file)
        keep = [name for name in pack.splits if splits is None or name in splits]
        pack = TokenPack({n: pack.tokens[n] for n in keep}, {n: pack.offsets[n] for n in keep}, pack.info)
        if getattr(tokenizer, "is_bpe", False) and pack.info.get("vocab_size") == tokenizer.base_vocab_size:
            return merged_pack(pack, tokenizer)  # a pack of performance events serves every BPE vocabulary
        if pack.info.get("vocab_size") != tokenizer.vocab_size or _merges_of(pack.info) != _merges_sha256(
            tokenizer
        ):
            raise TokenPackError(
                f"{tokens_file} was made for a vocabulary of {pack.info.get('vocab_size')} ids "
                f"({'BPE merges ' + _merges_of(pack.info)[:12] if _merges_of(pack.info) else 'no merges'}), "
                f"the tokenizer has {tokenizer.vocab_size}"
                f"{' (BPE merges ' + _merges_sha256(tokenizer)[:12] + ')' if _merges_sha256(tokenizer) else ''}"
            )
        return pack
    from datasets import DatasetDict

    from .data import load_maestro, load_midi_folder, tokenize_dataset

    started = time.perf_counter()
    source = Path(os.fspath(maestro if maestro is not None else midi_dir))
    if midi_dir is not None:
        raw = load_midi_folder(source, validation_fraction, test_fraction, seed=seed, num_proc=num_proc)
        corpus = {"corpus": "midi_folder", "name": source.resolve().name, "license": license}
    else:
        raw = load_maestro(maestro, version=maestro_version, num_proc=num_proc)
        corpus = {
            "corpus": "maestro",
            "name": maestro_name(source.name, maestro_version),
            "source": source.name,
        }
        corpus["license"] = license or MAESTRO_LICENSE
    raw = DatasetDict({name: split for name, split in raw.items() if splits is None or name in splits})
    if tokenizer.augmentation_stage == "corpus":  # split and augmented as Scores, by miditok
        corpus["source_sha256"] = file_sha256(source)
        return _miditok_pack(raw, tokenizer, corpus, started, max_seq_len, augment)
    ds, reports = tokenize_dataset(raw, tokenizer, num_proc=num_proc, return_report=True)
    settings = {k: getattr(tokenizer, k) for k in ("time_resolution_ms", "max_time_shift",
                                                    "num_velocity_bins", "sustain_pedal")}  # fmt: skip
    if _merges_sha256(tokenizer):
        settings["bpe_merges_sha256"] = _merges_sha256(tokenizer)
    info = _pack_info(
        {**corpus, "source_sha256": file_sha256(source)}, settings, tokenizer, ds, reports, started
    )
    return TokenPack.from_pieces({name: split["input_ids"] for name, split in ds.items()}, info)


def _merges_sha256(tokenizer) -> str | None:
    merges = getattr(tokenizer, "bpe_merges", None)
    return hashlib.sha256(np.asarray(merges, np.int64).tobytes()).hexdigest() if merges else None


def _merges_of(info: dict) -> str | None:
    return (info.get("tokenizer") or {}).get("bpe_merges_sha256")


def merged_pack(pack: TokenPack, tokenizer) -> TokenPack:
    """A pack of performance events with a BPE tokenizer's merges applied to every piece."""
    started = time.perf_counter()
    splits = {name: [tokenizer.merge(ids) for ids in pack.pieces(name)] for name in pack.splits}
    info = {
        **pack.info,
        "vocab_size": tokenizer.vocab_size,
        "tokenizer": {**pack.info.get("tokenizer", {}), "bpe_merges_sha256": _merges_sha256(tokenizer)},
    }
    merged = TokenPack.from_pieces(splits, info)
    sizes = ", ".join(
        f"{name} {pack.tokens[name].size:,} -> {merged.tokens[name].size:,}" for name in pack.splits
    )
    print(
        f"BPE merges applied ({tokenizer.vocab_size} ids): {sizes} tokens in {time.perf_counter() - started:.1f} s"
    )
    return merged


def _pack_info(corpus: dict, settings: dict, tokenizer, splits, reports: dict, started: float) -> dict:
    """What a pack records of its corpus: the source, the tokenizer, and per split the files, hours,
    notes and skipped files."""
    return {
        "corpus": corpus,
        "tokenizer": settings,
        "vocab_size": tokenizer.vocab_size,
        "files": {name: list(split["midi_filename"]) for name, split in splits.items()},
        "seconds": {name: report.seconds for name, report in reports.items()},
        "notes": {name: report.notes for name, report in reports.items()},
        "skipped": {name: [f for f, _ in report.skipped] for name, report in reports.items()},
        "dropped_notes": {name: report.dropped_notes for name, report in reports.items()},
        "tokenize_seconds": round(time.perf_counter() - started, 1),
    }


def _miditok_pack(raw, tokenizer, corpus: dict, started: float, max_seq_len, augment: bool) -> TokenPack:
    """A TokenPack of a miditok vocabulary: the train split split and augmented by miditok."""
    from .miditok_data import tokenize_with_miditok

    pieces, reports = {}, {}
    for name, split in raw.items():
        train = name == "train"
        pieces[name], reports[name] = tokenize_with_miditok(
            split, tokenizer, max_seq_len if train else None, augment and train, name=name
        )
    settings = {"class": type(tokenizer).__name__, "miditok": tokenizer.miditok.to_dict()}
    return TokenPack.from_pieces(pieces, _pack_info(corpus, settings, tokenizer, raw, reports, started))


__all__ = ["MAESTRO_LICENSE", "TokenPack", "TokenPackError", "file_sha256", "load_corpus", "merged_pack"]
