"""Token packs: the compact, checksummed corpus file, and load_corpus for every source."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import MAESTRO_MINI

from hf_music import MidiTokenizer
from hf_music.token_pack import TokenPack, TokenPackError, load_corpus


@pytest.fixture(scope="module")
def mini_pack(tmp_path_factory):
    pack = load_corpus(MidiTokenizer(), maestro=MAESTRO_MINI)
    return pack, pack.save(tmp_path_factory.mktemp("pack") / "mini.tokens.npz")


def test_pack_round_trip_keeps_every_piece_and_the_record(mini_pack, tokenizer):
    pack, path = mini_pack
    loaded = TokenPack.load(path)
    assert sorted(loaded.splits) == sorted(pack.splits) == ["test", "train", "validation"]
    for split in pack.splits:
        originals, again = pack.pieces(split), loaded.pieces(split)
        assert len(again) == len(originals) == len(pack.info["files"][split])
        assert all(np.array_equal(a, b) for a, b in zip(originals, again, strict=True))
        assert all(p[0] == tokenizer.bos_token_id and p[-1] == tokenizer.eos_token_id for p in again)
    # maestro-mini: 35 / 8 / 9 files; the record names the data, its licence and the tokenizer.
    assert {s: len(loaded.pieces(s)) for s in loaded.splits} == {"train": 35, "validation": 8, "test": 9}
    assert loaded.info["corpus"]["name"] == "maestro-mini (MAESTRO v3.0.0 layout)"  # not MAESTRO itself
    assert loaded.info["corpus"]["license"] == "cc-by-nc-sa-4.0"
    assert loaded.info["vocab_size"] == tokenizer.vocab_size and loaded.info["skipped"]["train"] == []
    assert loaded.tokens["train"].dtype == np.uint16


def test_pack_is_the_same_as_tokenizing_the_files(mini_pack, tokenizer):
    pack, _ = mini_pack
    first = pack.info["files"]["validation"][0]
    assert np.array_equal(pack.pieces("validation")[0], tokenizer.encode_midi(MAESTRO_MINI / first))


def test_damaged_pack_is_refused_with_its_name(mini_pack, tmp_path):
    _, path = mini_pack
    with np.load(path) as archive:
        arrays = {name: archive[name].copy() for name in archive.files}
    arrays["train.tokens"][100] ^= 1  # one flipped bit in one id, the record unchanged
    damaged = tmp_path / "damaged.npz"
    np.savez_compressed(damaged, **arrays)
    with pytest.raises(TokenPackError, match=r"damaged\.npz.*checksum mismatch in train\.tokens"):
        TokenPack.load(damaged)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(TokenPackError, match=r"junk\.npz"):
        TokenPack.load(tmp_path / "junk.npz")
    with pytest.raises(TokenPackError, match="does not exist"):
        TokenPack.load(tmp_path / "missing.npz")


def test_load_corpus_reads_a_pack_checks_its_vocabulary_and_selects_splits(mini_pack):
    _, path = mini_pack
    pack = load_corpus(MidiTokenizer(), tokens_file=path, splits=("train", "test"))
    assert sorted(pack.splits) == ["test", "train"]
    with pytest.raises(TokenPackError, match="vocabulary of 391"):
        load_corpus(MidiTokenizer(num_velocity_bins=16), tokens_file=path)
    with pytest.raises(ValueError, match="exactly one"):
        load_corpus(MidiTokenizer(), maestro=MAESTRO_MINI, tokens_file=path)


def test_a_pack_of_events_serves_a_bpe_tokenizer_and_a_bpe_pack_only_its_own(mini_pack, tmp_path):
    pack, path = mini_pack
    bpe = MidiTokenizer().train_bpe(pack.pieces("train"), 700)
    merged = load_corpus(bpe, tokens_file=path)
    assert merged.info["vocab_size"] == 700 and merged.info["tokenizer"]["bpe_merges_sha256"]
    for split in pack.splits:
        pieces, events = merged.pieces(split), pack.pieces(split)
        assert all(np.array_equal(bpe.base_ids(m), e) for m, e in zip(pieces, events, strict=True))
        assert merged.tokens[split].size < 0.9 * pack.tokens[split].size
    again = load_corpus(bpe, tokens_file=merged.save(tmp_path / "bpe.tokens.npz"))  # its own merges: as it is
    assert np.array_equal(again.tokens["test"], merged.tokens["test"])
    other = MidiTokenizer().train_bpe(pack.pieces("validation"), 700)
    with pytest.raises(TokenPackError, match="BPE merges"):
        load_corpus(other, tokens_file=tmp_path / "bpe.tokens.npz")


def test_ids_beyond_uint16_are_refused():
    with pytest.raises(ValueError, match=r"0\.\.65535"):
        TokenPack.from_pieces({"train": [np.array([1, 70000])]})


@pytest.mark.slow
def test_prepare_data_script_writes_a_pack(tmp_path):
    import subprocess
    import sys

    from conftest import REPO_ROOT

    out = tmp_path / "mini.npz"
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "prepare_data.py"), "--maestro_dir", str(MAESTRO_MINI),
         "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "train 35 pieces" in result.stdout and out.is_file()
    info = TokenPack.load(out).info
    assert json.dumps(info["files"]["test"]).count(".midi") == 9


def rewritten(path, tmp_path, change) -> object:
    """The pack at `path` with its arrays changed and new checksums: tampered, not damaged."""
    pack = TokenPack.load(path)
    tokens, offsets = dict(pack.tokens), dict(pack.offsets)
    change(tokens, offsets)
    return TokenPack(tokens, offsets, {k: v for k, v in pack.info.items() if k != "sha256"}).save(
        tmp_path / "tampered.tokens.npz"
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t, o: t["train"].__setitem__(5, 391), r"id 391, beyond its vocabulary of 391"),
        (
            lambda t, o: t.__setitem__(
                "train", np.where(np.arange(t["train"].size) == 5, np.int32(-1), t["train"].astype(np.int32))
            ),
            "negative id -1",
        ),
        (lambda t, o: o["validation"].__setitem__(2, o["validation"][1] - 1), "offsets"),
        (lambda t, o: o["test"].__setitem__(-1, o["test"][-1] - 1), "offsets"),
        (lambda t, o: o["test"].__setitem__(0, 1), "offsets"),
    ],
    ids=[
        "id_beyond_vocabulary",
        "negative_id",
        "offsets_going_back",
        "offsets_short_of_the_end",
        "offset_not_0",
    ],
)
def test_a_rewritten_pack_with_ids_or_offsets_out_of_range_is_refused(mini_pack, tmp_path, change, message):
    _, path = mini_pack
    tampered = rewritten(path, tmp_path, change)
    with pytest.raises(TokenPackError, match=rf"tampered\.tokens\.npz: split .*{message}"):
        TokenPack.load(tampered)
