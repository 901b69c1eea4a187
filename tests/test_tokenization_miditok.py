"""MiditokTokenizer: miditok vocabularies as transformers tokenizers, their corpora and their use.

Round trips are checked against miditok's own contract: ``decode(encode(score))`` equals
``tokenizer.preprocess_score(score)`` (times and durations on the vocabulary's grid, velocities
in its bins, duplicated notes and pitches outside ``pitch_range`` dropped), so the notes per
track are those of the preprocessed file.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import miditok
import numpy as np
import pytest
import symusic
import torch
from conftest import BAD_MIDI, POP909, run_without_hf_music
from raw_midi import fast_tempo_bomb, late_note_bomb

import hf_music
from hf_music import MidiReadError, MidiTokenizer, MiditokTokenizer, load_tokenizer
from hf_music.generation import generate_ids
from hf_music.hub import assemble_repo
from hf_music.miditok_data import PITCH_OFFSETS, tokenize_with_miditok
from hf_music.music_transformer.tokenization_miditok import VOCABULARIES, parse_options
from hf_music.resources import load_model, override_tokenizer

SONG = POP909 / "001.mid"
OPTIONS = {"REMI": {"use_programs": True}, "TSD": {"use_programs": True}, "MIDILike": {"use_programs": True},
           "Structured": {"use_programs": True}, "MMM": {}}  # fmt: skip


def notes_per_track(score) -> list[tuple[int, int]]:
    return [(track.program, track.note_num()) for track in score.tracks]


def with_programs(path, programs) -> symusic.Score:
    """A POP909 song whose three tracks (all program 0 in the file) play the given GM programs."""
    score = symusic.Score(path)
    for track, program in zip(score.tracks, programs, strict=True):
        track.program = program
    return score


@pytest.fixture(scope="module")
def mmm():
    return MiditokTokenizer.from_miditok("MMM")


@pytest.mark.parametrize("name", VOCABULARIES)
def test_every_vocabulary_round_trips_text_and_midi(name):
    tok = MiditokTokenizer.from_miditok(name, **OPTIONS[name])
    assert tok.get_vocab() == {**tok.miditok.vocab}  # miditok's ids and token strings, unchanged
    ids = tok.encode_midi(SONG)
    assert ids[0] == tok.bos_token_id == tok.miditok.vocab["BOS_None"] and ids[-1] == tok.eos_token_id
    assert ids[1:-1] == list(tok.miditok.encode(symusic.Score(SONG)).ids)  # exactly miditok's encoding
    text = tok.decode(ids, skip_special_tokens=True)
    assert tok(text).input_ids == ids  # the text form: space-separated miditok tokens
    expected = notes_per_track(tok.miditok.preprocess_score(symusic.Score(SONG)))
    assert notes_per_track(tok.decode_midi(ids)) == expected


def test_programs_keep_instruments_apart_and_mmm_keeps_tracks_of_one_program():
    # POP909's MELODY, BRIDGE and PIANO tracks are all program 0: a vocabulary that tells tracks
    # apart by program (REMI with use_programs) merges them, MMM (tracks one after another) does not.
    remi = MiditokTokenizer.from_miditok("REMI", use_programs=True)
    assert notes_per_track(remi.decode_midi(remi.encode_midi(SONG))) == [(0, 264 + 307 + 985)]
    mmm = MiditokTokenizer.from_miditok("MMM")
    assert notes_per_track(mmm.decode_midi(mmm.encode_midi(SONG))) == [(0, 264), (0, 307), (0, 985)]
    # Given programs of their own, REMI keeps the three tracks and their programs.
    score = with_programs(SONG, (73, 33, 0))
    assert sorted(notes_per_track(remi.decode_midi(remi.encode_midi(score)))) == [
        (0, 985),
        (33, 307),
        (73, 264),
    ]
    # Without programs every track is merged into one part (one stream is what the LM reads).
    plain = MiditokTokenizer.from_miditok("REMI")
    assert notes_per_track(plain.decode_midi(plain.encode_midi(score))) == [(0, 1556)]
    assert remi.keeps_instruments and mmm.keeps_instruments and not plain.keeps_instruments


@pytest.mark.slow
def test_saved_folder_loads_with_autotokenizer_in_a_fresh_process(tmp_path, mmm):
    folder = tmp_path / "tok"
    mmm.save_pretrained(folder)
    assert json.loads((folder / "miditok_params.json").read_text())["tokenization"] == "MMM"
    assert json.loads((folder / "tokenizer_config.json").read_text())["tokenizer_class"] == "MiditokTokenizer"
    script = textwrap.dedent(
        """
        import json, sys
        import hf_music
        from transformers import AutoTokenizer
        tok = AutoTokenizer.from_pretrained(sys.argv[1])
        score = tok.decode_midi(tok.encode_midi(sys.argv[2]))
        print(json.dumps([type(tok).__name__, [[t.program, t.note_num()] for t in score.tracks]]))
        """
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", script, str(folder), str(SONG)], capture_output=True, text=True,
                            env=env, cwd=tmp_path, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    name, tracks = json.loads(result.stdout.strip().splitlines()[-1])
    assert name == "MiditokTokenizer"
    # Every track kept, with miditok's preprocessed notes; here that is every note of the file.
    original = notes_per_track(symusic.Score(SONG))
    assert (
        [tuple(t) for t in tracks]
        == notes_per_track(mmm.miditok.preprocess_score(symusic.Score(SONG)))
        == original
    )


def test_tokenizer_json_gives_the_same_ids(tmp_path, mmm):
    from tokenizers import Tokenizer

    mmm.save_pretrained(tmp_path)
    fast = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    ids = mmm.encode_midi(SONG)[:300]
    text = mmm.decode(ids[1:], skip_special_tokens=True)
    assert (
        fast.encode(text).ids == mmm(text).input_ids == [*ids, mmm.eos_token_id][: len(fast.encode(text).ids)]
    )
    assert fast.decode(ids, skip_special_tokens=True) == text


def test_wrapping_an_existing_miditok_tokenizer_and_refusals():
    config = miditok.TokenizerConfig(num_velocities=8, use_programs=True)
    own = miditok.TSD(config)
    tok = MiditokTokenizer.from_miditok(own)
    assert tok.miditok is own and tok.vocab_size == len(own)
    with pytest.raises(ValueError, match="built already"):
        MiditokTokenizer.from_miditok(own, use_programs=False)
    with pytest.raises(ValueError, match="several vocabularies"):
        MiditokTokenizer.from_miditok(miditok.CPWord())
    with pytest.raises(ValueError, match="unknown miditok vocabulary"):
        MiditokTokenizer.from_miditok("Octuple")


def test_bad_input_names_the_file_and_any_ids_decode(mmm):
    with pytest.raises(MidiReadError, match="truncated"):
        mmm.encode_midi(BAD_MIDI / "truncated.mid")
    assert mmm.encode_midi(BAD_MIDI / "no_notes.mid") == [mmm.bos_token_id, mmm.eos_token_id]
    rng = np.random.default_rng(0)
    for _ in range(20):
        assert isinstance(mmm.decode_midi(rng.integers(-5, len(mmm) + 5, 200)), symusic.core.ScoreTick)
    assert mmm.decode_midi([]).note_num() == 0


def test_midi_time_bombs_are_refused_and_bulk_jobs_skip_them(tmp_path, mmm):
    # Before: numpy's MemoryError (2 GB for one float per tick) with a prompt's max_seconds, and
    # symusic's OverflowError (int32 ticks) from miditok's resampling for two minutes over 2**28 quarters.
    late, fast = tmp_path / "late.mid", tmp_path / "fast.mid"
    late.write_bytes(late_note_bomb())
    fast.write_bytes(fast_tempo_bomb())
    with pytest.raises(MidiReadError, match=rf"^{late}: lasts [\d,.]+ h, over the limit of 6 h per piece$"):
        mmm.encode_midi(late, max_seconds=4.0)
    with pytest.raises(
        MidiReadError, match=rf"^{fast}: 268,435,655 quarter notes, over the limit of 100,000"
    ):
        mmm.encode_midi(fast)
    pieces, report = tokenize_with_miditok(rows_of([late, SONG, fast]), mmm)
    assert len(pieces) == 1 and [name for name, _ in report.skipped] == ["late.mid", "fast.mid"]


def test_prompt_seconds_keep_the_first_notes(mmm):
    notes = mmm.ids_to_notes(mmm.encode_midi(SONG, max_seconds=12.0))
    assert len(notes) > 20 and notes.onset.max() < 12.0
    assert len(mmm.ids_to_notes(mmm.encode_midi(SONG))) == 1556


def test_load_tokenizer_takes_a_vocabulary_name_options_or_a_saved_folder_and_names_bad_ones(tmp_path):
    assert isinstance(load_tokenizer(None), MidiTokenizer) and isinstance(
        load_tokenizer("performance"), MidiTokenizer
    )
    remi = load_tokenizer("REMI", "use_programs=true,num_velocities=16")
    assert remi.miditok.config.use_programs and remi.miditok.config.num_velocities == 16
    remi.save_pretrained(tmp_path)
    again = load_tokenizer(str(tmp_path))
    assert isinstance(again, MiditokTokenizer) and again.get_vocab() == remi.get_vocab()
    assert parse_options("a=1, b=true,c=x") == {"a": 1, "b": True, "c": "x"}
    with pytest.raises(ValueError, match="miditok vocabulary"):
        load_tokenizer("REMIX")
    with pytest.raises(ValueError, match="saved one"):
        load_tokenizer(str(tmp_path), "use_programs=true")


def rows_of(paths):
    return {"midi_filename": [p.name for p in paths], "midi": [p.read_bytes() for p in paths]}


def test_corpus_is_split_and_augmented_by_miditok(mmm):
    files = sorted(POP909.glob("*.mid"))[:3]
    whole, _ = tokenize_with_miditok(rows_of(files), mmm)
    assert [len(p) for p in whole] == [len(mmm.encode_midi(f)) for f in files]
    chunks, report = tokenize_with_miditok(rows_of(files), mmm, max_seq_len=512)
    assert len(chunks) > 3 * 5 and report.files == 3
    lengths = np.array([len(p) for p in chunks])
    # miditok cuts at bars from an estimate of tokens per note, so chunks land near the limit, not
    # under it (measured on these files: median 542, at most 594; train.py's windows crop the rest).
    assert abs(np.median(lengths) - 512) < 0.15 * 512 and lengths.max() < 1.25 * 512, lengths
    assert report.notes >= sum(symusic.Score(f).note_num() for f in files)  # every bar is in a chunk
    assert all(p[0] == mmm.bos_token_id and p[-1] == mmm.eos_token_id for p in chunks)
    augmented, _ = tokenize_with_miditok(rows_of(files), mmm, max_seq_len=512, augment=True)
    assert len(chunks) < len(augmented) <= len(chunks) * (1 + len(PITCH_OFFSETS))
    pitches = [sorted({n.pitch for t in mmm.decode_midi(p).tracks for n in t.notes}) for p in augmented[:2]]
    assert pitches[1] != pitches[0]  # a transposed copy follows its chunk


def tiny_model(tokenizer):
    config = hf_music.MusicTransformerConfig.from_preset(
        "tiny", vocab_size=tokenizer.vocab_size, n_positions=128, n_embd=32, n_layer=1, n_head=2
    )
    torch.manual_seed(0)
    return hf_music.MusicTransformerForCausalLM(config).eval()


def test_checkpoint_loads_with_its_tokenizer_and_generates(tmp_path, mmm):
    model = tiny_model(mmm)
    model.save_pretrained(tmp_path)
    mmm.save_pretrained(tmp_path)
    loaded_model, loaded = load_model(str(tmp_path))
    assert isinstance(loaded, MiditokTokenizer) and loaded.get_vocab() == mmm.get_vocab()
    # --tokenizer of generate/evaluate: another saved tokenizer, only if the model knows its ids.
    assert override_tokenizer(loaded_model, loaded, None) is loaded
    assert override_tokenizer(loaded_model, loaded, str(tmp_path)).get_vocab() == mmm.get_vocab()
    with pytest.raises(ValueError, match="the model knows 391"):
        override_tokenizer(tiny_model(MidiTokenizer()), MidiTokenizer(), str(tmp_path))
    rows = generate_ids(loaded_model, loaded, prompt=SONG, prompt_seconds=4.0, max_new_tokens=100, seed=0,
                        num_return_sequences=2)  # fmt: skip
    prompt = mmm.encode_midi(SONG, add_special_tokens=False, max_seconds=4.0)
    for row in rows:
        assert row[: len(prompt) + 1] == [mmm.bos_token_id, *prompt] and len(row) == len(prompt) + 101
        new = row[len(prompt) + 1 :]
        assert mmm.pad_token_id not in new and mmm.bos_token_id not in new  # suppressed mid-piece


def test_a_length_in_seconds_stops_once_the_decoded_music_lasts_that_long(mmm):
    from hf_music.generation import _DecodedDurationCriteria

    remi = MiditokTokenizer.from_miditok("REMI", use_programs=True)
    song = remi.encode_midi(SONG)[:-1]
    prompt = song[:100]
    stop = _DecodedDurationCriteria(remi, [prompt], 0, remi.seconds(prompt), max_seconds=5.0, every=1)
    lengths = [n for n in range(1, 400) if stop(torch.tensor([song[100 : 100 + n]]), None)[0]]
    first = lengths[0]  # the first length whose decoded music passes the prompt's end by 5 s
    assert remi.seconds(song[: 100 + first]) - remi.seconds(prompt) >= 5.0
    assert remi.seconds(song[: 100 + first - 1]) - remi.seconds(prompt) < 5.0


def test_train_refuses_a_new_vocabulary_for_a_performance_model(tmp_path):
    from hf_music.commands import train

    model = tiny_model(MidiTokenizer())
    model.save_pretrained(tmp_path / "base")
    MidiTokenizer().save_pretrained(tmp_path / "base")
    args = train.parse_args(
        [
            "--midi_dir",
            str(POP909),
            "--init_from",
            str(tmp_path / "base"),
            "--tokenizer",
            "MMM",
            "--block_size",
            "128",
        ]
    )
    with pytest.raises(SystemExit, match="drop --init_from"):
        train.build_model(args)
    args = train.parse_args(
        ["--midi_dir", str(POP909), "--init_from", str(tmp_path / "base"), "--block_size", "128"]
    )
    model, tokenizer = train.build_model(args)
    assert "instruments are lost" in train.training_mode(args, tokenizer)
    args = train.parse_args(["--midi_dir", str(POP909), "--tokenizer", "MMM"])
    assert "from scratch with the miditok MMM (REMI) vocabulary" in train.training_mode(
        args, load_tokenizer("MMM")
    )


def test_fine_tuning_a_vocabulary_without_programs_says_instruments_are_lost():
    from hf_music.commands import train

    args = train.parse_args(["--midi_dir", str(POP909), "--init_from", "base", "--block_size", "128"])
    assert "instruments are lost" in train.training_mode(args, MiditokTokenizer.from_miditok("REMI"))
    kept = MiditokTokenizer.from_miditok("REMI", use_programs=True)
    assert "instruments are lost" not in train.training_mode(args, kept)


@pytest.mark.slow
def test_train_on_a_multitrack_corpus_saves_the_miditok_tokenizer(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for path in sorted(POP909.glob("*.mid"))[8:14]:  # 012 and 013 hash to validation at 0.3
        (corpus / path.name).write_bytes(path.read_bytes())
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "hf_music.cli", "train", "--midi_dir", str(corpus), "--tokenizer", "MMM",
           "--validation_fraction", "0.3", "--preset", "tiny", "--config_overrides", "n_embd=32,n_layer=1,n_head=2",
           "--block_size", "128", "--batch_size", "4", "--max_steps", "3", "--eval_steps", "3",
           "--warmup_steps", "1", "--report_to", "none", "--output_dir", str(out)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "training a new model from scratch with the miditok MMM (REMI) vocabulary" in result.stdout
    _, tokenizer = load_model(str(out / "best"))
    assert isinstance(tokenizer, MiditokTokenizer) and (Path(out / "best") / "miditok_params.json").is_file()
    assert not (out / "best" / "custom_generate").exists()  # the performance grammar does not apply
    # evaluate.py scores the checkpoint on the corpus read the same way, and compares samples.
    from hf_music.commands import evaluate
    from hf_music.run_record import RunRecord

    (validation,) = evaluate.main(["--model", str(out / "best"), "--midi_dir", str(corpus), "--validation_fraction",
                                   "0.3", "--block_size", "128", "--samples", "1", "--max_new_tokens", "32",
                                   "--save_to_record"])  # fmt: skip
    assert (
        0 < validation.model.nats_per_token < math.log(len(tokenizer)) + 0.5
    )  # 3 steps: near chance, and finite
    assert validation.model.nats_per_second is None  # a miditok vocabulary has no TIME_SHIFT clock to count
    assert len(validation.samples.features) == 7
    record = RunRecord.load(out / "best")  # the run record names the corpus and keeps the result
    assert record.evaluations == [validation] and record.training_data[-1].kind == "midi_folder"
    # The Hub folder loads and writes MIDI for a user without hf_music (trust_remote_code, miditok installed).
    repo = assemble_repo(out / "best", tmp_path / "repo", "user/pop-mmm")
    assert {"miditok_params.json", "tokenizer.json", "tokenization_miditok.py"} <= {
        p.name for p in repo.iterdir()
    }
    printed = run_without_hf_music(repo, tmp_path / "hub_user.mid")
    assert "MiditokTokenizer" in printed and symusic.Score(tmp_path / "hub_user.mid").ticks_per_quarter > 0


@pytest.mark.slow  # in-process, but over 5 s: pieces composed through the Space's app
def test_space_composes_with_a_miditok_checkpoint(tmp_path, monkeypatch, mmm):
    import importlib.util

    remi = MiditokTokenizer.from_miditok("REMI", use_programs=True)
    tiny_model(remi).save_pretrained(tmp_path)
    remi.save_pretrained(tmp_path)
    monkeypatch.setenv("HF_MUSIC_MODEL", str(tmp_path))
    spec = importlib.util.spec_from_file_location(
        "space_app_miditok", Path(__file__).parents[1] / "space" / "app.py"
    )
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)
    monkeypatch.setattr(app, "MAX_NEW_TOKENS", 256)  # a random model may never reach the seconds asked for
    upload = tmp_path / "three_instruments.mid"
    with_programs(SONG, (73, 33, 0)).dump_midi(str(upload))
    outputs = list(app.compose(1.0, 0, 1.0, 2, 0, False, app.NO_PROMPT, str(upload), 15, False))
    assert len(outputs) == 1  # a miditok vocabulary has no TIME_SHIFT clock to stream by: one piece
    audio, _, midi_path, facts, ids, _ = outputs[-1]
    assert Path(audio).stat().st_size > 44 and "notes" in facts  # a WAV with samples
    score = symusic.Score(midi_path)
    # The prompt's three instruments come back (the random model's continuation may add more notes).
    assert {73, 33, 0} <= {t.program for t in score.tracks if t.note_num()}
    assert ids[0] == remi.bos_token_id


def test_the_command_line_names_the_vocabulary_and_tracks_only_where_kept(tmp_path, capsys):
    from hf_music.commands.generate import main

    for use_programs in (False, True):
        tok = MiditokTokenizer.from_miditok("REMI", use_programs=use_programs)
        folder = tmp_path / f"programs_{use_programs}"
        tiny_model(tok).save_pretrained(folder)
        tok.save_pretrained(folder)
        main(["--model", str(folder), "--out", str(folder / "piece.mid"), "--no_wav", "--max_new_tokens", "64",
              "--seed", "0"])  # fmt: skip
        printed = capsys.readouterr().out
        assert f"vocabulary: {tok.vocabulary_description}, 64 new tokens per piece; grammar-aware" in printed
        assert ("tracks (programs" in printed) == use_programs


def test_the_space_plays_a_score_track_by_track_only_where_instruments_are_kept():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "space_app_decoded", Path(__file__).parents[1] / "space" / "app.py"
    )
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)
    for tok, plays_notes in (
        (MiditokTokenizer.from_miditok("REMI"), True),
        (MiditokTokenizer.from_miditok("REMI", use_programs=True), False),
        (MidiTokenizer(), True),
    ):
        ids = tok.encode_midi(SONG, max_seconds=5.0)
        score, notes, piece, seconds = app.decoded(tok, ids)
        assert isinstance(piece, hf_music.PerformanceNotes) == plays_notes
        assert len(notes) == score.note_num() > 0 and seconds == tok.seconds(ids)
