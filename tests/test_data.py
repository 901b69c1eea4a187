"""Data: MAESTRO loader (folder, zip, file:// URL, v2/v3 metadata), MIDI folders, tokenization
with bad files, training blocks, augmentation and streaming."""

from __future__ import annotations

import csv
import io
import json
import shutil
import zipfile
from collections import Counter

import numpy as np
import pytest
from conftest import BAD_MIDI, MAESTRO_METADATA, MAESTRO_MINI, POP909
from datasets import Dataset, DatasetDict, IterableDatasetDict
from datasets.distributed import split_dataset_by_node
from raw_midi import late_note_bomb, long_note_bomb, note, smf

from hf_music import data
from hf_music.data import (
    load_maestro,
    load_midi_folder,
    read_maestro_metadata,
    tokenize_dataset,
)


@pytest.fixture(scope="module")
def maestro():
    return load_maestro(MAESTRO_MINI)


@pytest.fixture(scope="module")
def maestro_tokens(maestro, tokenizer):
    return tokenize_dataset(maestro, tokenizer)


@pytest.fixture(scope="module")
def maestro_zip(tmp_path_factory):
    """maestro-mini packed like the official maestro-v3.0.0-midi.zip (one top folder)."""
    path = tmp_path_factory.mktemp("zip") / "maestro-v3.0.0-midi.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for file in sorted(MAESTRO_MINI.rglob("*")):
            if file.is_file() and file.name != "LICENSE":
                archive.write(file, f"maestro-v3.0.0/{file.relative_to(MAESTRO_MINI).as_posix()}")
    return path


def by_name(split):
    return {row["midi_filename"]: row for row in split}


# ---------------------------------------------------------------- MAESTRO
def test_maestro_mini_has_maestro_splits_and_columns(maestro):
    assert isinstance(maestro, DatasetDict)
    assert {name: len(split) for name, split in maestro.items()} == {"train": 35, "validation": 8, "test": 9}
    assert maestro["train"].column_names == [
        "canonical_composer",
        "canonical_title",
        "split",
        "year",
        "midi_filename",
        "duration",
        "midi",
    ]
    assert maestro["train"].features["midi"].dtype == "binary"
    row = maestro["validation"][0]
    assert row["split"] == "validation"
    assert row["midi"] == (MAESTRO_MINI / row["midi_filename"]).read_bytes()
    assert abs(sum(sum(s["duration"]) for s in maestro.values()) / 3600 - 4.2) < 0.05


def test_real_metadata_counts_and_missing_files_are_reported(tmp_path):
    rows = read_maestro_metadata(data._MidiSource(MAESTRO_METADATA), "v3.0.0")
    assert Counter(row["split"] for row in rows) == {"train": 962, "validation": 137, "test": 177}
    assert abs(sum(row["duration"] for row in rows) / 3600 - 198.65) < 0.01
    with pytest.raises(FileNotFoundError) as info:
        load_maestro(MAESTRO_METADATA)
    message = str(info.value)
    assert "1276 of 1276" in message and str(MAESTRO_METADATA) in message and "allow_missing" in message
    # allow_missing loads what exists: here a copy of the metadata with two of the files
    shutil.copy(MAESTRO_METADATA / "maestro-v3.0.0.json", tmp_path)
    for row in [r for r in rows if r["split"] == "train"][:2]:
        (tmp_path / row["midi_filename"]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(next(MAESTRO_MINI.glob("*/*.midi")), tmp_path / row["midi_filename"])
    partial = load_maestro(tmp_path, allow_missing=True)
    assert {name: len(split) for name, split in partial.items()} == {"train": 2}


def test_zip_source_equals_folder(maestro, maestro_zip):
    from_zip = load_maestro(maestro_zip)
    for split in ("train", "validation", "test"):
        assert by_name(from_zip[split]) == by_name(maestro[split])


def test_edited_file_is_read_again_not_served_from_the_cache(tmp_path):
    folder = shutil.copytree(MAESTRO_MINI, tmp_path / "maestro")
    first = load_maestro(folder)["validation"]
    name = first[0]["midi_filename"]
    other = next(row["midi_filename"] for row in first if row["midi_filename"] != name)
    shutil.copy(folder / other, folder / name)  # the file changes, the folder's own time does not
    again = load_maestro(folder)["validation"]
    assert again[0]["midi_filename"] == name and again[0]["midi"] == (folder / other).read_bytes()


def test_file_url_is_downloaded_to_cache_and_reused(maestro, maestro_zip, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_MUSIC_CACHE", str(tmp_path / "cache"))
    source = tmp_path / "served" / maestro_zip.name
    source.parent.mkdir()
    shutil.copy(maestro_zip, source)
    first = load_maestro(source.as_uri())
    assert (tmp_path / "cache" / maestro_zip.name).is_file()
    source.unlink()  # the second load must come from the cache
    second = load_maestro(source.as_uri())
    assert by_name(first["test"]) == by_name(second["test"]) == by_name(maestro["test"])


def test_official_download_path_with_file_url_standing_in_for_network(maestro_zip, tmp_path, monkeypatch):
    # No network here: the official URL is replaced by a file:// URL; the code path is the same.
    monkeypatch.setenv("HF_MUSIC_CACHE", str(tmp_path))
    monkeypatch.setitem(data.MAESTRO_URLS, "v3.0.0", maestro_zip.as_uri())
    assert len(load_maestro(None)["validation"]) == 8


def test_corrupt_download_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_MUSIC_CACHE", str(tmp_path / "cache"))
    broken = tmp_path / "maestro-v3.0.0-midi.zip"
    broken.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ValueError, match="not a valid zip"):
        load_maestro(broken.as_uri())
    with pytest.raises(ValueError, match="sha256"):
        data.download(broken.as_uri(), sha256="0" * 64, cache=tmp_path / "other")


def test_v2_json_and_csv_only_metadata(tmp_path, maestro):
    rows = list(csv.DictReader((MAESTRO_MINI / "maestro-v3.0.0.csv").open()))
    for row in rows:
        target = tmp_path / row["midi_filename"]
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(MAESTRO_MINI / row["midi_filename"], target)
    (tmp_path / "maestro-v2.0.0.json").write_text(json.dumps(rows))  # v2: a list of rows
    v2 = load_maestro(tmp_path, version="v2.0.0")
    assert by_name(v2["validation"]) == by_name(maestro["validation"])
    shutil.copy(MAESTRO_MINI / "maestro-v3.0.0.csv", tmp_path)  # v3 with only the csv
    assert {name: len(split) for name, split in load_maestro(tmp_path).items()} == {
        "train": 35,
        "validation": 8,
        "test": 9,
    }


def mini_zip_with(path, extra: dict[str, bytes], rows=None):
    """maestro-mini as a MAESTRO zip, plus extra members, with the metadata rows given (csv)."""
    rows = rows if rows is not None else list(csv.DictReader((MAESTRO_MINI / "maestro-v3.0.0.csv").open()))
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for row in rows:
            source = MAESTRO_MINI / row["midi_filename"]
            if source.is_file():
                archive.write(source, f"maestro-v3.0.0/{row['midi_filename']}")
        for name, content in extra.items():
            archive.writestr(name, content)
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
        archive.writestr("maestro-v3.0.0/maestro-v3.0.0.csv", text.getvalue())
    return path


def test_unsafe_names_and_oversized_members_are_refused(tmp_path, caplog):
    rows = list(csv.DictReader((MAESTRO_MINI / "maestro-v3.0.0.csv").open()))
    climbing = mini_zip_with(tmp_path / "climb.zip", {"maestro-v3.0.0/../../evil.midi": b"MThd"})
    with pytest.raises(ValueError, match=r"climb\.zip: unsafe path 'maestro-v3\.0\.0/\.\./\.\./evil\.midi'"):
        load_maestro(climbing)
    # Metadata naming a file outside the dataset folder.
    folder = tmp_path / "folder"
    shutil.copytree(MAESTRO_MINI, folder)
    (tmp_path / "outside.mid").write_bytes((MAESTRO_MINI / rows[0]["midi_filename"]).read_bytes())
    with open(folder / "maestro-v3.0.0.csv", "a", newline="") as handle:
        csv.DictWriter(handle, fieldnames=list(rows[0])).writerow(
            {**rows[0], "midi_filename": "../outside.mid"}
        )
    (folder / "maestro-v3.0.0.json").unlink()
    with pytest.raises(ValueError, match=r"unsafe path '\.\./outside\.mid'"):
        load_maestro(folder)
    # A zip bomb: 65 MB of zeros listed as a performance is skipped (named in a warning), not read.
    bomb_row = {**rows[0], "midi_filename": "2018/bomb.midi", "split": "test"}
    bomb = mini_zip_with(
        tmp_path / "bomb.zip", {"maestro-v3.0.0/2018/bomb.midi": bytes(65 * 2**20)}, [*rows, bomb_row]
    )
    with zipfile.ZipFile(bomb) as archive:
        assert archive.getinfo("maestro-v3.0.0/2018/bomb.midi").compress_size < 2**20  # small on disk
    ds = load_maestro(bomb)
    assert len(ds["test"]) == 9 and "2018/bomb.midi" not in ds["test"]["midi_filename"]
    assert "skipped 2018/bomb.midi" in caplog.text


def patch_central_directory(path, member: str, file_size: int | None = None, flip_data: bool = False):
    """Damage a zip in place: declare a false uncompressed size for a member, or flip a byte of its data."""
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(member)
    if flip_data:
        local_name, local_extra = (int.from_bytes(raw[info.header_offset + i : info.header_offset + i + 2], "little") for i in (26, 28))  # fmt: skip
        start = info.header_offset + 30 + local_name + local_extra
        raw[start + info.compress_size // 2] ^= 0xFF
    if file_size is not None:
        # The central directory's entry repeats the local header's fields 4..26 at its 6..28.
        entry = raw.rindex(raw[info.header_offset + 4 : info.header_offset + 26]) - 6
        raw[entry + 24 : entry + 28] = file_size.to_bytes(4, "little")
    path.write_bytes(bytes(raw))


def test_damaged_zip_members_are_skipped_and_counted_and_metadata_is_capped(tmp_path, caplog):
    rows = list(csv.DictReader((MAESTRO_MINI / "maestro-v3.0.0.csv").open()))
    train = [row["midi_filename"] for row in rows if row["split"] == "train"]
    damaged = mini_zip_with(tmp_path / "damaged.zip", {})
    patch_central_directory(damaged, f"maestro-v3.0.0/{train[0]}", flip_data=True)  # bad CRC or deflate
    size = (MAESTRO_MINI / train[1]).stat().st_size
    patch_central_directory(damaged, f"maestro-v3.0.0/{train[1]}", file_size=size // 2)  # a false size
    # Declared too large, a deflated member still reads whole and passes its CRC: kept.
    patch_central_directory(damaged, f"maestro-v3.0.0/{train[2]}", file_size=size + 1000)
    ds = load_maestro(damaged)  # before: zipfile.BadZipFile aborted the whole load
    assert {name: len(split) for name, split in ds.items()} == {"train": 33, "validation": 8, "test": 9}
    assert "skipped 2 damaged file(s) in " in caplog.text and all(name in caplog.text for name in train[:2])
    assert train[2] in ds["train"]["midi_filename"]
    # A metadata member declaring 2 GB is refused before a byte of it is read.
    patch_central_directory(damaged, "maestro-v3.0.0/maestro-v3.0.0.csv", file_size=2**31)
    with pytest.raises(ValueError, match=r"maestro-v3\.0\.0\.csv is 2,147,483,648 bytes, over the 64 MB"):
        load_maestro(damaged)


def test_missing_source_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_maestro(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"no maestro-v3\.0\.0\.json or \.csv"):
        load_maestro(tmp_path)


# ---------------------------------------------------------------- MIDI folders
def test_midi_folder_split_is_stable_when_files_are_added(tmp_path):
    corpus = tmp_path / "corpus"
    shutil.copytree(POP909, corpus)
    before = load_midi_folder(corpus, validation_fraction=0.2, test_fraction=0.1)
    assert set(before) == {"train", "validation", "test"}
    assert sum(len(s) for s in before.values()) == 30
    assert len(before["train"]) > len(before["validation"]) > 0
    (corpus / "more" / "deeper").mkdir(parents=True)
    for i, file in enumerate(sorted(POP909.glob("*.mid"))[:10]):
        shutil.copy(file, corpus / "more" / "deeper" / f"extra_{i}.midi")
    after = load_midi_folder(corpus, validation_fraction=0.2, test_fraction=0.1)
    assert sum(len(s) for s in after.values()) == 40
    for split in before:
        assert set(before[split]["midi_filename"]) <= set(after[split]["midi_filename"])
    other_seed = load_midi_folder(corpus, validation_fraction=0.2, test_fraction=0.1, seed=1)
    assert set(other_seed["validation"]["midi_filename"]) != set(after["validation"]["midi_filename"])


def test_symbolic_links_out_of_a_midi_folder_are_skipped_and_counted(tmp_path, caplog):
    corpus, elsewhere = tmp_path / "corpus", tmp_path / "elsewhere"
    corpus.mkdir()
    elsewhere.mkdir()
    songs = sorted(POP909.glob("*.mid"))[:3]
    for song in songs:
        shutil.copy(song, corpus)
    shutil.copy(songs[0], elsewhere / "secret.mid")
    (corpus / "secret.mid").symlink_to(elsewhere / "secret.mid")
    (corpus / "linked").symlink_to(elsewhere, target_is_directory=True)
    (corpus / "alias.mid").symlink_to(corpus / songs[1].name)  # stays inside: kept
    ds = load_midi_folder(corpus, validation_fraction=0.0)
    assert sorted(ds["train"]["midi_filename"]) == sorted(["alias.mid", *(song.name for song in songs)])
    assert "skipped 1 symbolic link(s) leading out of" in caplog.text and "secret.mid" in caplog.text


def test_bad_files_are_skipped_counted_and_listed(tmp_path, tokenizer, capsys):
    corpus = tmp_path / "mixed"
    shutil.copytree(POP909, corpus)
    shutil.copytree(BAD_MIDI, corpus / "bad")
    ds = load_midi_folder(corpus, validation_fraction=0.0)
    assert len(ds["train"]) == 36
    tokenized, reports = tokenize_dataset(ds, tokenizer, return_report=True)
    report = reports["train"]
    skipped = sorted(name for name, _ in report.skipped)
    assert skipped == [
        "bad/corrupted_Control168.mid",
        "bad/no_notes.mid",  # valid, but nothing to learn from
        "bad/not_midi.mid",
        "bad/truncated.mid",
        "bad/zero_bytes.mid",
    ]
    assert all(name in reason for name, reason in report.skipped)
    assert "without notes" in dict(report.skipped)["bad/no_notes.mid"]
    assert len(tokenized["train"]) == report.files == 31  # 30 songs and the odd-but-valid file
    printed = capsys.readouterr().out
    assert "skipped 5 bad file(s)" in printed and "bad/truncated.mid" in printed


def test_time_bombs_are_skipped_and_dropped_notes_counted(tokenizer, capsys):
    # Before: numpy's MemoryError from the 44-byte file aborted the whole job.
    unclosed = smf([note(0, 60, 100) + bytes((0, 0x90, 62, 64)) + note(100, 64, 100)])  # 62 never ends
    twice = smf([note(0, 60, 100), note(2, 60, 100)])  # two tracks strike one key within 10 ms
    files = {
        "late.mid": late_note_bomb(),
        "long.mid": long_note_bomb(),
        "unclosed.mid": unclosed,
        "twice.mid": twice,
    }
    ds = Dataset.from_dict({"midi_filename": list(files), "midi": list(files.values())})
    tokenized, report = tokenize_dataset(ds, tokenizer, return_report=True)
    assert tokenized["midi_filename"] == ["unclosed.mid", "twice.mid"]
    assert [name for name, _ in report.skipped] == ["late.mid", "long.mid"]
    assert all("over the limit of 6 h per piece" in reason for _, reason in report.skipped)
    assert report.dropped_notes == 2  # one never closed, one struck again in the same step
    assert "3 notes, 16 tokens, 2 notes dropped; skipped 2 bad file(s)" in capsys.readouterr().out


def test_tokenize_report_counts_notes_and_hours(maestro, tokenizer, capsys):
    tokens, reports = tokenize_dataset(maestro, tokenizer, return_report=True)
    for split in tokens.values():
        assert "midi" not in split.column_names
        for ids in split["input_ids"]:
            assert ids[0] == 1 and ids[-1] == 2
    counted = sum(
        int(np.count_nonzero((np.asarray(ids) >= 3) & (np.asarray(ids) < 131)))
        for split in tokens.values()
        for ids in split["input_ids"]
    )
    assert counted == sum(r.notes for r in reports.values()) == 152_602  # no same-step repeats here
    assert abs(sum(r.seconds for r in reports.values()) / 3600 - 4.2) < 0.05
    assert [r.files for r in reports.values()] == [35, 8, 9]
    assert "train: tokenized 35 files" in capsys.readouterr().out


# ---------------------------------------------------------------- streaming
def test_streaming_equals_in_memory_and_shards_by_node(tokenizer):
    in_memory = tokenize_dataset(load_midi_folder(POP909, validation_fraction=0.2), tokenizer)
    streamed = tokenize_dataset(load_midi_folder(POP909, validation_fraction=0.2, streaming=True), tokenizer)
    assert isinstance(streamed, IterableDatasetDict)
    streamed_ids = [row["input_ids"] for row in streamed["train"]]
    assert len(streamed_ids) == len(in_memory["train"]) > 20
    assert streamed_ids == in_memory["train"]["input_ids"]  # the same pieces, in the same order
    assert streamed["train"].num_shards == len(in_memory["train"])
    parts = [
        [row["midi_filename"] for row in split_dataset_by_node(streamed["train"], rank=rank, world_size=2)]
        for rank in (0, 1)
    ]
    assert not set(parts[0]) & set(parts[1])
    assert sorted(parts[0] + parts[1]) == sorted(in_memory["train"]["midi_filename"])


def test_streaming_maestro_and_bad_files_dropped(tmp_path, tokenizer):
    streamed = load_maestro(MAESTRO_MINI, streaming=True)
    assert [row["midi_filename"] for row in streamed["validation"]] == load_maestro(MAESTRO_MINI)[
        "validation"
    ]["midi_filename"]
    corpus = tmp_path / "mixed"
    shutil.copytree(BAD_MIDI, corpus)
    shutil.copy(POP909 / "001.mid", corpus)
    rows = list(
        tokenize_dataset(load_midi_folder(corpus, validation_fraction=0.0, streaming=True), tokenizer)[
            "train"
        ]
    )
    assert sorted(r["midi_filename"] for r in rows) == ["001.mid", "corrupted_unexpected_EOF.mid"]
