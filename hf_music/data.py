"""Datasets: MAESTRO with its own splits, any folder of MIDI files, and their tokenization.
Everything returns real `datasets` objects.

    ds = load_maestro("~/maestro-v3.0.0")              # or the official zip, a URL, or None
    ds = tokenize_dataset(ds, MidiTokenizer())          # adds input_ids, skips and lists bad files

Training windows and evaluation blocks are cut from the tokenized pieces in one place,
`hf_music.windows` (WindowSampler, evaluation_blocks), which train.py and evaluate.py share.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import shutil
import tempfile
import urllib.parse
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from datasets import (
    Dataset,
    DatasetDict,
    Features,
    IterableDataset,
    IterableDatasetDict,
    List,
    Value,
)

from .music_transformer.tokenization_music_transformer import MAX_MIDI_BYTES, MidiReadError, MidiTokenizer

logger = logging.getLogger(__name__)

MAESTRO_URLS = {
    "v3.0.0": "https://storage.googleapis.com/magentadata/datasets/maestro/v3.0.0/maestro-v3.0.0-midi.zip",
    "v2.0.0": "https://storage.googleapis.com/magentadata/datasets/maestro/v2.0.0/maestro-v2.0.0-midi.zip",
}
MAESTRO_SPLITS = ("train", "validation", "test")
MAESTRO_FEATURES = Features(
    {
        "canonical_composer": Value("string"),
        "canonical_title": Value("string"),
        "split": Value("string"),
        "year": Value("int32"),
        "midi_filename": Value("string"),
        "duration": Value("float64"),
        "midi": Value("binary"),
    }
)
FOLDER_FEATURES = Features({"midi_filename": Value("string"), "midi": Value("binary")})
MIDI_SUFFIXES = (".mid", ".midi", ".rmi")


# ---------------------------------------------------------------------------- sources
def cache_dir() -> Path:
    """Where downloads go: $HF_MUSIC_CACHE, else the Hugging Face cache's hf_music folder."""
    default = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")) / "hf_music"
    return Path(os.environ.get("HF_MUSIC_CACHE", default))


def download(url: str, sha256: str | None = None, cache: Path | None = None) -> Path:
    """Fetch a URL (http(s) or file://) into the cache once; verify sha256 when given, and a zip's CRCs.

    The file is written to a temporary name and renamed when complete, so an interrupted
    download is never mistaken for a cached one.
    """
    cache = Path(cache or cache_dir())
    cache.mkdir(parents=True, exist_ok=True)
    name = Path(urllib.parse.urlparse(url).path).name or "download"
    target = cache / name
    if not target.exists():
        logger.info("downloading %s to %s", url, target)
        with tempfile.NamedTemporaryFile(dir=cache, delete=False, suffix=".part") as tmp:
            try:
                with urllib.request.urlopen(url) as response:
                    shutil.copyfileobj(response, tmp)
            except Exception:
                os.unlink(tmp.name)
                raise
        os.replace(tmp.name, target)
    if sha256 is not None:
        digest = hashlib.sha256(target.read_bytes()).hexdigest()
        if digest != sha256:
            raise ValueError(
                f"{target}: sha256 {digest} does not match the expected {sha256}; delete it and retry"
            )
    if target.suffix == ".zip":
        try:
            with zipfile.ZipFile(target) as archive:
                broken = archive.testzip()
        except zipfile.BadZipFile as err:
            raise ValueError(
                f"{target} (from {url}) is not a valid zip file: {err}; delete it and retry"
            ) from err
        if broken is not None:
            raise ValueError(f"{target} (from {url}) is corrupt: CRC error in {broken}; delete it and retry")
    return target


# MAX_MIDI_BYTES (64 MB) is far above any real performance (MAESTRO's largest file is under 1 MB):
# a bigger member is a zip bomb or not MIDI, and is skipped before it is read. MAESTRO v3's metadata
# is 0.4 MB (.csv) and 0.6 MB (.json); a 1 GB CSV used to cost 6.6 GB of memory before failing.
MAX_METADATA_BYTES = 64 * 2**20
# What reading a damaged zip member raises: a bad CRC or a false size (BadZipFile), a broken deflate
# stream (zlib.error), a member cut short (EOFError).
ZIP_MEMBER_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError)


def _check_relative(name: str, where: str) -> str:
    """A path that stays inside its folder or archive, else a ValueError naming it."""
    parts = name.replace("\\", "/").split("/")
    if not name or name.startswith(("/", "\\")) or ".." in parts or ":" in parts[0]:
        raise ValueError(
            f"{where}: unsafe path {name!r} (absolute or climbing out with '..'); refusing to read it"
        )
    return name


class _MidiSource:
    """Reads MAESTRO metadata and MIDI bytes from an extracted folder or a zip archive.

    Paths are checked: absolute names and '..' are refused, in the archive's member list and in
    the metadata alike, so nothing outside the folder or archive is read.
    """

    def __init__(self, location: Path):
        self.location = location
        self.archive = zipfile.ZipFile(location) if location.suffix == ".zip" else None
        if self.archive is not None:
            names = self.archive.namelist()
            for name in names:
                _check_relative(name, f"{location}")
            # The official zip has everything below one folder (maestro-v3.0.0/...).
            tops = {n.split("/", 1)[0] for n in names if "/" in n}
            self.prefix = f"{tops.pop()}/" if len(tops) == 1 else ""
            self.members = set(names)

    def describe(self) -> str:
        return f"{self.location}" + (f" (inside the zip, under '{self.prefix}')" if self.archive else "")

    def exists(self, relative: str) -> bool:
        _check_relative(relative, self.describe())
        if self.archive is not None:
            return self.prefix + relative in self.members
        return (self.location / relative).is_file()

    def size(self, relative: str) -> int:
        if self.archive is not None:
            return self.archive.getinfo(self.prefix + relative).file_size
        return (self.location / relative).stat().st_size

    def read(self, relative: str) -> bytes:
        _check_relative(relative, self.describe())
        if self.archive is not None:
            return self.archive.read(self.prefix + relative)
        return (self.location / relative).read_bytes()


def _resolve_source(source, version: str) -> Path:
    if source is None:
        return download(MAESTRO_URLS[version])
    text = os.fspath(source)
    if "://" in text:
        return download(text)
    path = Path(text).expanduser()
    if not path.exists():
        raise FileNotFoundError(
            f"MAESTRO source {path} does not exist (give a folder, the -midi.zip, a URL or None)"
        )
    return path


def read_maestro_metadata(source: _MidiSource, version: str) -> list[dict]:
    """Rows of MAESTRO's metadata: v3's column-oriented .json (or .csv), v2's list-of-rows .json."""
    for name in (f"maestro-{version}.json", f"maestro-{version}.csv"):
        if source.exists(name):
            if source.size(name) > MAX_METADATA_BYTES:
                raise ValueError(
                    f"{source.describe()}: {name} is {source.size(name):,} bytes, over the "
                    f"{MAX_METADATA_BYTES >> 20} MB any MAESTRO metadata needs; refusing to read it"
                )
            try:
                raw = source.read(name)
            except ZIP_MEMBER_ERRORS as err:
                raise ValueError(f"{source.describe()}: {name} is damaged ({err})") from err
            break
    else:
        raise FileNotFoundError(f"no maestro-{version}.json or .csv in {source.describe()}")
    if name.endswith(".csv"):
        rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8"))))
    else:
        data = json.loads(raw)
        if isinstance(data, dict):  # v3: {"column": {"0": value, ...}, ...}
            columns = list(data)
            keys = sorted(data[columns[0]], key=int)
            rows = [{c: data[c][k] for c in columns} for k in keys]
        else:  # v2: [{"column": value, ...}, ...]
            rows = data
    return [
        {
            "canonical_composer": str(row["canonical_composer"]),
            "canonical_title": str(row["canonical_title"]),
            "split": str(row["split"]),
            "year": int(row["year"]),
            "midi_filename": str(row["midi_filename"]),
            "duration": float(row["duration"]),
        }
        for row in rows
    ]


def _maestro_rows(location: str, rows: list[dict], stamp: str = ""):
    """One row per readable file; a damaged zip member is skipped with a warning (load_maestro counts them)."""
    source = _MidiSource(Path(location))
    for row in rows:
        try:
            midi = source.read(row["midi_filename"])
        except ZIP_MEMBER_ERRORS as err:
            logger.warning("skipped %s in %s: damaged (%s)", row["midi_filename"], source.describe(), err)
            continue
        yield {**row, "midi": midi}


def _folder_rows(root: str, files: list[str], stamp: str = ""):
    for relative in files:
        yield {"midi_filename": relative, "midi": (Path(root) / relative).read_bytes()}


def _stamp(paths) -> str:
    """Sizes and modification times: part of the cache fingerprint, so edited files are re-read."""
    digest = hashlib.sha256()
    for path in paths:
        stat = os.stat(path)
        digest.update(f"{path}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    return digest.hexdigest()


def _source_stamp(location: Path, rows: list[dict]) -> str:
    """A zip's size and time, or those of every file a folder's rows name: an edited file is re-read."""
    if location.is_file():
        return _stamp([location])
    return _stamp(location / row["midi_filename"] for row in rows)


def _from_rows(generator, gen_kwargs, features, streaming, num_proc):
    # List-valued gen_kwargs are sharded by datasets: one shard per file when streaming.
    if streaming:
        # One shard per file list element: split_dataset_by_node hands each process its own.
        return IterableDataset.from_generator(generator, features=features, gen_kwargs=gen_kwargs)
    return Dataset.from_generator(generator, features=features, gen_kwargs=gen_kwargs, num_proc=num_proc)


def load_maestro(
    source=None,
    version: str = "v3.0.0",
    num_proc: int | None = None,
    allow_missing: bool = False,
    streaming: bool = False,
) -> DatasetDict | IterableDatasetDict:
    """MAESTRO as a DatasetDict with MAESTRO's own train / validation / test splits.

    Args:
        source: an extracted MAESTRO folder, the official ``maestro-<version>-midi.zip`` (a
            local path or a URL, ``file://`` included), or None for the official download
            (cached under ``cache_dir()``, zip CRCs checked).
        version: "v3.0.0" (metadata .json or .csv) or "v2.0.0" (.json).
        allow_missing: load the files that exist when some listed in the metadata are
            missing (they are counted in a warning); by default that is an error.
        streaming: an IterableDatasetDict that reads files lazily, one shard per file.
    Columns: canonical_composer, canonical_title, split, year, midi_filename, duration, midi (bytes).
    """
    location = _resolve_source(source, version)
    midi_source = _MidiSource(location)
    rows = read_maestro_metadata(midi_source, version)
    missing = [row["midi_filename"] for row in rows if not midi_source.exists(row["midi_filename"])]
    missing_set = set(missing)
    oversized = {
        row["midi_filename"]
        for row in rows
        if row["midi_filename"] not in missing_set and midi_source.size(row["midi_filename"]) > MAX_MIDI_BYTES
    }
    for name in sorted(oversized):
        logger.warning(
            "skipped %s in %s: over %d MB uncompressed", name, midi_source.describe(), MAX_MIDI_BYTES >> 20
        )
    if missing:
        message = (
            f"{len(missing)} of {len(rows)} MIDI files listed in maestro-{version} metadata are missing "
            f"under {midi_source.describe()} (first: {missing[0]})"
        )
        if not allow_missing:
            raise FileNotFoundError(message + "; pass allow_missing=True to load the files that exist")
        logger.warning("%s; loading the %d that exist", message, len(rows) - len(missing))
    dropped = missing_set | oversized
    rows = [row for row in rows if row["midi_filename"] not in dropped]
    splits = {}
    for split in MAESTRO_SPLITS:
        split_rows = [row for row in rows if row["split"] == split]
        if not split_rows:
            continue
        splits[split] = _from_rows(
            _maestro_rows,
            {"location": str(location), "rows": split_rows, "stamp": _source_stamp(location, split_rows)},
            MAESTRO_FEATURES,
            streaming,
            num_proc,
        )
    if not streaming:  # streaming reads lazily: a damaged member is named when it is met
        rows = _without_damaged(rows, splits, midi_source)
    hours = sum(row["duration"] for row in rows) / 3600
    counts = "/".join(str(sum(row["split"] == s for row in rows)) for s in MAESTRO_SPLITS)
    logger.info("MAESTRO %s: %d files (train/validation/test %s), %.1f h", version, len(rows), counts, hours)
    return (IterableDatasetDict if streaming else DatasetDict)(splits)


def _without_damaged(rows: list[dict], splits: dict, source: _MidiSource) -> list[dict]:
    """The rows loaded: those of damaged zip members (skipped while reading) counted and named in a warning."""
    loaded = {name for split in splits.values() for name in split["midi_filename"]}
    damaged = sorted(row["midi_filename"] for row in rows if row["midi_filename"] not in loaded)
    if damaged:
        logger.warning(
            "skipped %d damaged file(s) in %s: %s", len(damaged), source.describe(), ", ".join(damaged)
        )
    return [row for row in rows if row["midi_filename"] in loaded]


def split_of(relative_path: str, validation_fraction: float, test_fraction: float, seed: int) -> str:
    """Deterministic split from a hash of the path: adding files elsewhere never moves a file."""
    digest = hashlib.sha256(f"{seed}:{relative_path}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    if u < test_fraction:
        return "test"
    if u < test_fraction + validation_fraction:
        return "validation"
    return "train"


def _folder_midi_files(root: Path) -> list[str]:
    """Relative paths of the MIDI files under root; symbolic links that lead out of it are skipped,
    counted and named in a warning (a corpus folder must not read files elsewhere)."""
    inside, outside = [], []
    resolved_root = root.resolve()
    for path in root.rglob("*"):
        if path.suffix.lower() not in MIDI_SUFFIXES or not path.is_file():
            continue
        relative = path.relative_to(root).as_posix()
        (inside if path.resolve().is_relative_to(resolved_root) else outside).append(relative)
    if outside:
        logger.warning(
            "skipped %d symbolic link(s) leading out of %s: %s",
            len(outside),
            root,
            ", ".join(sorted(outside)),
        )
    return sorted(inside)


def load_midi_folder(
    path,
    validation_fraction: float = 0.1,
    test_fraction: float = 0.0,
    seed: int = 0,
    num_proc: int | None = None,
    streaming: bool = False,
) -> DatasetDict | IterableDatasetDict:
    """Any folder tree of .mid/.midi files as a DatasetDict (train, validation, test when > 0).

    The split of each file is a hash of its relative path (and ``seed``), so it is the same on
    every machine and does not change when other files are added or removed.
    Columns: midi_filename (relative path), midi (bytes).
    """
    root = Path(path).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"MIDI folder {root} does not exist")
    if not 0 <= validation_fraction + test_fraction < 1:
        raise ValueError("validation_fraction + test_fraction must be in [0, 1)")
    files = _folder_midi_files(root)
    if not files:
        raise FileNotFoundError(f"no .mid or .midi files under {root}")
    oversized = {f for f in files if (root / f).stat().st_size > MAX_MIDI_BYTES}
    for name in sorted(oversized):
        logger.warning("skipped %s in %s: over %d MB", name, root, MAX_MIDI_BYTES >> 20)
    files = [f for f in files if f not in oversized]
    by_split: dict[str, list[str]] = {}
    for relative in files:
        by_split.setdefault(split_of(relative, validation_fraction, test_fraction, seed), []).append(relative)
    wanted = ["train"] + [
        s for s, f in (("validation", validation_fraction), ("test", test_fraction)) if f > 0
    ]
    splits = {}
    for split in wanted:
        split_files = by_split.get(split, [])
        if not split_files:
            raise ValueError(
                f"{root}: no file fell into the {split} split ({len(files)} files); raise its fraction or change the seed"
            )
        gen_kwargs = {"root": str(root), "files": split_files, "stamp": _stamp(root / f for f in split_files)}
        splits[split] = _from_rows(_folder_rows, gen_kwargs, FOLDER_FEATURES, streaming, num_proc)
    return (IterableDatasetDict if streaming else DatasetDict)(splits)


# ---------------------------------------------------------------------------- tokenization
@dataclass
class TokenizationReport:
    """What tokenize_dataset did: counts, and the files it skipped with the reason."""

    files: int = 0
    seconds: float = 0.0
    notes: int = 0
    tokens: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    pieces: int | None = None  # when files were cut into more pieces (miditok's splitting, augmentation)
    # Notes of the files kept that the tokens lack: NOTE_ONs never closed and tracks beyond the header's
    # count (the MIDI parser's), strikes of one key within one time step (the encoding's).
    dropped_notes: int = 0

    def summary(self) -> str:
        pieces = f" -> {self.pieces} pieces" if self.pieces is not None else ""
        dropped = f", {self.dropped_notes:,} notes dropped" if self.dropped_notes else ""
        line = (
            f"tokenized {self.files} files{pieces}: {self.seconds / 3600:.2f} h, {self.notes:,} notes, "
            f"{self.tokens:,} tokens{dropped}; skipped {len(self.skipped)} bad file(s)"
        )
        # A MidiReadError names its file already.
        return line + "".join(
            f"\n  skipped {reason if reason.startswith(name) else f'{name}: {reason}'}"
            for name, reason in self.skipped
        )


def _tokenize_batch(batch, tokenizer: MidiTokenizer):
    ids, errors, dropped = [], [], []
    for name, data in zip(batch["midi_filename"], batch["midi"], strict=True):
        try:
            notes, unread = tokenizer.read_notes(data, name=name)
            if len(notes) == 0:  # nothing to learn from: skipped and counted like a bad file
                raise MidiReadError(f"{name}: a valid MIDI file without notes")
            piece = tokenizer.encode_notes(notes).astype(np.int32)
            ids.append(piece)
            errors.append("")
            dropped.append(unread + len(notes) - int(tokenizer.notes_of_id[piece].sum()))
        except MidiReadError as err:  # PieceTooLongError (a time bomb) included
            ids.append(np.zeros(0, np.int32))
            errors.append(str(err))
            dropped.append(0)
    return {"input_ids": ids, "error": errors, "dropped_notes": dropped}


def tokenize_dataset(
    ds,
    tokenizer: MidiTokenizer,
    num_proc: int | None = None,
    keep_midi: bool = False,
    return_report: bool = False,
):
    """Add ``input_ids`` (with <bos>/<eos>) to a Dataset, DatasetDict or their streaming forms.

    Bad files never abort the job: they are skipped, counted and listed at the end (one
    summary line per split is printed). With ``return_report`` also returns the
    `TokenizationReport` (a dict of them for a DatasetDict). Streaming datasets are lazy: bad
    files are logged as they are met and dropped, and the report is None.
    """
    if isinstance(ds, (DatasetDict, IterableDatasetDict)):
        results = {
            name: _tokenize_split(split, tokenizer, num_proc, keep_midi, name) for name, split in ds.items()
        }
        out = type(ds)({name: split for name, (split, _) in results.items()})
        reports = {name: report for name, (_, report) in results.items()}
        return (out, reports if isinstance(ds, DatasetDict) else None) if return_report else out
    out, report = _tokenize_split(ds, tokenizer, num_proc, keep_midi, ds.split or "dataset")
    return (out, report) if return_report else out


def _tokenize_split(ds, tokenizer, num_proc, keep_midi, name):
    drop = [] if keep_midi else ["midi"]
    features = Features({k: v for k, v in ds.features.items() if k not in drop})
    features["input_ids"] = List(Value("int32"))
    features["error"] = Value("string")
    features["dropped_notes"] = Value("int64")
    streaming = isinstance(ds, IterableDataset)
    mapped = ds.map(
        _tokenize_batch,
        batched=True,
        batch_size=16,
        fn_kwargs={"tokenizer": tokenizer},
        remove_columns=drop,
        features=features,
        **({} if streaming else {"num_proc": num_proc, "desc": f"tokenizing {name}"}),
    )
    if streaming:  # lazy: bad files are logged as they are met

        def keep_good(example):
            if example["error"]:
                logger.warning("skipped %s", example["error"])
            return not example["error"]

        return mapped.filter(keep_good).remove_columns(["error", "dropped_notes"]), None
    errors = mapped["error"]
    skipped = [(file, err) for file, err in zip(mapped["midi_filename"], errors, strict=True) if err]
    good = mapped.filter(lambda e: not e, input_columns="error") if skipped else mapped
    dropped = int(np.sum(good.with_format("numpy")["dropped_notes"]))
    good = good.remove_columns(["error", "dropped_notes"])
    stats = corpus_statistics(good, tokenizer)
    report = TokenizationReport(
        stats["files"], stats["seconds"], stats["notes"], stats["tokens"], skipped, dropped_notes=dropped
    )
    print(f"{name}: {report.summary()}")
    return good, report


def corpus_statistics(ds: Dataset, tokenizer: MidiTokenizer) -> dict:
    """Notes, tokens and seconds of music in a tokenized dataset (numpy over the Arrow column)."""
    column = ds.with_format("numpy")["input_ids"]
    flat = np.concatenate(list(column)) if len(column) else np.zeros(0, np.int64)
    return {
        "files": len(ds),
        "tokens": int(flat.size),
        "notes": int(tokenizer.notes_of_id[flat].sum()),
        "seconds": int(tokenizer.steps_of_id[flat].sum()) * tokenizer.time_step,
    }


__all__ = [
    "MAESTRO_URLS",
    "TokenizationReport",
    "cache_dir",
    "corpus_statistics",
    "download",
    "load_maestro",
    "load_midi_folder",
    "read_maestro_metadata",
    "split_of",
    "tokenize_dataset",
]
