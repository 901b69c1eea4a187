"""The Gradio Space (space/app.py): in a real Chromium through Playwright, and through gradio_client.

The app runs in this process on 127.0.0.1 with the model it would use on a Space
($HF_MUSIC_MODEL, else the checkpoint embedded in hf_music). Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import importlib.util
import os
import re
import socket
from pathlib import Path

import numpy as np
import pytest
import symusic
from conftest import BAD_MIDI, REPO_ROOT

CHROMIUM = "/usr/bin/chromium"
AUDIO_FILE = "#audio a.download-link"  # the WAV behind Gradio's player (its <audio> lives in a shadow root)
ARTIFACTS = Path(os.environ.get("HF_MUSIC_TEST_ARTIFACTS", REPO_ROOT / "test-artifacts"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def space():
    """(app module, URL) of the Space launched on a free local port."""
    spec = importlib.util.spec_from_file_location("hf_music_space_app", REPO_ROOT / "space" / "app.py")
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)
    port = free_port()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield app, f"http://127.0.0.1:{port}/"
    app.demo.close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).is_file(), f"{CHROMIUM} missing: run bash scripts/install_system_packages.sh"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        # Audio may start without a click, as it would after the user's click on Generate.
        chromium = pw.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"]
        )
        yield chromium
        chromium.close()


def test_space_readme_front_matter_and_system_packages():
    from huggingface_hub import SpaceCard

    card = SpaceCard.load(REPO_ROOT / "space" / "README.md")
    pyproject = (REPO_ROOT / "pyproject.toml").read_text()
    assert card.data.sdk == "gradio" and card.data.app_file == "app.py"
    assert f'"gradio=={card.data.sdk_version}"' in pyproject
    assert card.data.license == "cc-by-nc-sa-4.0" and card.data.short_description
    packages = (REPO_ROOT / "space" / "packages.txt").read_text().split()
    assert packages == ["libfluidsynth3", "musescore-general-soundfont-small"]
    installer = (REPO_ROOT / "scripts" / "install_system_packages.sh").read_text()
    assert all(package in installer for package in packages)


def watch_updates(page):
    """Record, in the page, every new audio file and piano-roll image as they appear."""
    page.evaluate(
        """() => {
        window.seen = {audio: [], roll: []};
        const note = (list, value) => { if (value && list[list.length - 1] !== value) list.push(value); };
        window.watcher = setInterval(() => {
            note(window.seen.audio, document.querySelector('#audio a.download-link')?.getAttribute('href'));
            note(window.seen.roll, document.querySelector('#piano-roll img')?.getAttribute('src'));
        }, 25);
    }"""
    )


def in_viewport(page, selector) -> bool:
    box = page.locator(selector).first.bounding_box()
    size = page.viewport_size
    return box is not None and box["y"] >= 0 and box["y"] + box["height"] <= size["height"]


@pytest.mark.slow
def test_browser_streams_stops_keeps_work_and_plays_examples(space, browser):
    from playwright.sync_api import expect

    app, url = space
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(url)
    assert (
        in_viewport(page, "#generate") and in_viewport(page, "#temperature") and in_viewport(page, "#seconds")
    )
    page.screenshot(path=str(ARTIFACTS / "space_1280x800.png"))

    # A 20 s piece streams: the piano roll and the audio change while it is being written.
    page.locator("#temperature input[type=range]").fill("1.4")
    expect(page.locator("#temperature input[type=number]")).to_have_value("1.4")
    watch_updates(page)
    page.locator("#generate").click()
    expect(page.locator("#facts")).to_contain_text("new tokens", timeout=120_000)  # the final update
    seen = page.evaluate("window.seen")
    counts = {name: len(values) for name, values in seen.items()}
    assert counts["audio"] >= 4 and counts["roll"] >= 4, counts  # >= 3 partial updates, then the piece
    expect(page.locator("#facts")).to_contain_text("temperature 1.4")
    # The whole piece (20-21 s: the last time shift may pass 20 s), its last notes ringing out 1 s.
    expect(page.locator("#audio")).to_contain_text(re.compile(r"0:2[12]"))
    expect(page.locator("#midi a[href$='.mid']")).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "space_generated_1280x800.png"), full_page=True)

    # Stop during a 60 s piece: what was written stays playable, and downloadable as MIDI.
    page.locator("#seconds input[type=number]").fill("60")
    page.locator("#seconds input[type=number]").press("Enter")
    page.locator("#generate").click()
    # Stop once 2.5 s or more are written: the grammar allows at most 2 s of silence, so the piece
    # then holds notes (the first update, after 1 s of music, may be silent).
    expect(page.locator("#facts")).to_contain_text(re.compile(r"Writing: (?!0\.|1\.)\d"), timeout=60_000)
    page.locator("#stop").click()
    expect(page.locator("#message")).to_contain_text("Stopped", timeout=10_000)
    page.wait_for_timeout(1000)
    facts = page.locator("#facts").inner_text()
    assert "Stopped after" in facts and "Writing" not in facts  # stopped before the piece was done
    href = page.locator("#midi a[href$='.mid']").first.get_attribute("href")
    midi = page.request.get(href if href.startswith("http") else url.rstrip("/") + href)
    notes = app.model_and_tokenizer()[1].midi_to_notes(midi.body())
    assert len(notes) > 0 and notes.offset.max() < 59
    kept_audio = page.locator(AUDIO_FILE).get_attribute("href")
    assert kept_audio.endswith(".wav")
    expect(page.locator("#audio button[aria-label='Play']")).to_be_visible()

    # A file that is not MIDI: a named message beside the result, which stays (audio included).
    page.get_by_text("Your MIDI file").click()  # the accordion opens
    page.locator("#upload input[type=file]").set_input_files(str(BAD_MIDI / "not_midi.mid"))
    # As a person would, wait until the page has the file (it says so) before pressing Generate:
    # clicked during the upload, Generate may run with no file or one not yet in Gradio's folder.
    expect(page.locator("#upload-info")).to_contain_text("not a valid MIDI file", timeout=30_000)
    page.locator("#generate").click()
    expect(page.locator("#message")).to_contain_text("not a valid MIDI file", timeout=30_000)
    expect(page.locator("#message")).to_contain_text("not_midi.mid")
    expect(page.get_by_text("Traceback")).to_have_count(0)
    assert page.locator(AUDIO_FILE).get_attribute("href") == kept_audio
    expect(page.locator("#audio")).not_to_contain_text("Error")
    page.screenshot(path=str(ARTIFACTS / "space_bad_upload_1280x800.png"), full_page=True)
    page.locator("#upload button[aria-label='Clear']").first.click()

    # An example fills the controls and generates with its settings and seed.
    page.get_by_text("Frédéric Chopin, Etude Op. 10 No. 9 · temperature 0.7 · 20 s").click()
    expect(page.locator("#temperature input[type=number]")).to_have_value("0.7")
    expect(page.locator("#seconds input[type=number]")).to_have_value("20")
    expect(page.locator("#facts")).to_contain_text("new tokens", timeout=120_000)
    expect(page.locator("#facts")).to_contain_text(
        "continuing the first 10 s of Frédéric Chopin, Etude Op. 10 No. 9"
    )
    expect(page.locator("#facts")).to_contain_text("seed 3, temperature 0.7")
    expect(page.locator("#message")).to_have_text("")
    page.close()


@pytest.mark.slow
def test_browser_phone_layout_and_dark_mode(space, browser):
    _, url = space
    for theme in ("light", "dark"):
        page = browser.new_page(viewport={"width": 390, "height": 844}, color_scheme=theme)
        page.goto(f"{url}?__theme={theme}")
        page.locator("#generate").wait_for()
        for control in ("#generate", "#stop", "#temperature", "#seconds", "#bundled"):
            assert in_viewport(page, control), f"{control} below the fold at 390x844 ({theme})"
        if theme == "dark":  # the page really is dark, and its text light
            background, text = page.evaluate(
                """() => [getComputedStyle(document.querySelector('gradio-app')).backgroundColor,
                          getComputedStyle(document.querySelector('#temperature label span, #temperature span')).color]"""
            )
            channels = lambda css: [int(v) for v in css[css.index("(") + 1 : -1].split(",")[:3]]  # noqa: E731
            assert sum(channels(background)) < 200 and sum(channels(text)) > 450, (background, text)
        page.screenshot(path=str(ARTIFACTS / f"space_390x844_{theme}.png"))
        page.close()
    assert (ARTIFACTS / "space_390x844_dark.png").stat().st_size > 10_000


@pytest.mark.slow  # in-process, but over 5 s: pieces composed through the Space's app
def test_eight_users_at_once_each_get_their_own_seeded_piece(space):
    from gradio_client import Client

    from hf_music import generate_ids

    app, url = space
    model, tokenizer = app.model_and_tokenizer()
    # Eight sessions submit together; the queue interleaves nothing it should not: each piece is
    # exactly the one its seed and temperature give alone.
    requests = [(0.5 + 1.0 * (user % 2), 20 + user) for user in range(8)]
    jobs = [
        Client(url, verbose=False).submit(
            temperature, 0, 1.0, 5, seed, False, app.NO_PROMPT, None, 0, False, api_name="/compose"
        )
        for temperature, seed in requests
    ]
    results = [job.result(timeout=300) for job in jobs]  # all done before this process samples itself
    for (temperature, seed), (audio, _, midi_path, facts, used_seed) in zip(requests, results, strict=True):
        alone = generate_ids(model, tokenizer, None, max_new_tokens=app.MAX_NEW_TOKENS, max_seconds=5,
                             seed=seed, pitch_temperature=temperature, top_p=1.0)[0]  # fmt: skip
        expected, got = tokenizer.ids_to_notes(alone), tokenizer.midi_to_notes(midi_path)
        assert used_seed == seed and f"temperature {temperature:g}" in facts
        assert np.array_equal(got.pitch, expected.pitch) and np.allclose(got.onset, expected.onset)
        assert Path(audio).stat().st_size > 5 * 44100 * 4  # 5 s of 16-bit stereo at least
    assert app.demo._queue.max_size == app.QUEUE_LIMIT  # more waiting requests get Gradio's "busy"


def test_audio_is_44k_stereo_at_minus_1_dbfs(space):
    import wave

    app, _ = space
    *_, (audio, _, _, facts, _, _) = app.compose(
        1.0, 0, 1.0, 3, 0, False, "scarlatti_sonata_k525", None, 4, False, None
    )
    with wave.open(audio) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (2, 2, 44100)
        samples = np.frombuffer(wav.readframes(wav.getnframes()), "<i2").astype(float)
    assert abs(20 * np.log10(np.abs(samples).max() / 32767) + 1) < 0.05
    # Musicians' words: the prompt by title, in seconds and note names.
    summary = r"continuing the first 4 s of Domenico Scarlatti, Sonata K\. 525 \(\d\.\d s, \d+ notes from [A-G]#?\d to [A-G]#?\d\)"
    assert re.search(summary, facts), facts


def test_bad_midi_files_give_a_named_error_not_a_traceback(space):
    import gradio as gr

    app, _ = space
    refused = {}
    for path in sorted(BAD_MIDI.iterdir()):
        try:
            list(app.compose(1.0, 0, 1.0, 2, 0, False, app.NO_PROMPT, str(path), 0, False, None))
        except gr.Error as error:
            refused[path.name] = error.message
    # corrupted_unexpected_EOF.mid still parses (symusic reads up to the damage): it is continued.
    assert sorted(refused) == sorted(p.name for p in BAD_MIDI.iterdir() if "unexpected_EOF" not in p.name)
    for name, message in refused.items():
        assert message.startswith(name + ": ")
    assert "no notes" in refused["no_notes.mid"] and "empty" in refused["zero_bytes.mid"]
    # The page's version keeps the last result: every output but the message is left as it was.
    (*outputs, message, ids, seed) = next(
        app.compose_ui(
            1.0, 0, 1.0, 2, 0, False, app.NO_PROMPT, str(BAD_MIDI / "no_notes.mid"), 0, False, None
        )
    )
    assert "no_notes.mid: the file has no notes" in message and "kept" in message
    assert all(value == app.gr.skip() for value in (*outputs, ids, seed))  # Gradio leaves them as they are


def test_uploads_over_the_size_cap_are_refused_by_name(space, tmp_path):
    import gradio as gr

    app, _ = space
    big = tmp_path / "huge.mid"
    big.write_bytes(b"MThd" + bytes(app.MAX_UPLOAD_BYTES))
    with pytest.raises(gr.Error, match=r"huge\.mid is 1\.0 MB; the limit is 1 MB"):
        next(app.compose(1.0, 0, 1.0, 2, 0, False, app.NO_PROMPT, str(big), 0, False, None))


def test_an_upload_gone_from_the_folder_is_a_named_message_not_a_crash(space, tmp_path):
    app, _ = space
    gone = tmp_path / "vanished.mid"  # Gradio cleaned its folder, or the upload never finished
    *_, message, _, _ = next(
        app.compose_ui(1.0, 0, 1.0, 2, 0, False, app.NO_PROMPT, str(gone), 0, False, None)
    )
    assert "vanished.mid could not be read" in message and "last piece is kept" in message


def test_without_a_soundfont_the_app_still_returns_midi_and_piano_roll(space, monkeypatch, tmp_path):
    app, _ = space
    monkeypatch.setenv("HF_MUSIC_SOUNDFONT", str(tmp_path / "no_such.sf2"))
    *_, (audio, figure, midi_path, facts, ids, _) = app.compose(
        1.0, 0, 1.0, 3, 0, False, app.NO_PROMPT, None, 0, False, None
    )
    assert audio is None and "Audio unavailable" in facts and "no_such.sf2 does not exist" in facts
    notes = app.model_and_tokenizer()[1].midi_to_notes(midi_path)
    assert figure is not None and len(notes) > 0 and len(ids) > 1


def held_note_midi(tmp_path, seconds: float) -> Path:
    """A MIDI file of a few dozen bytes: middle C held for `seconds`."""
    import symusic

    score = symusic.Score(1000, ttype="second")
    track = symusic.Track(program=0, ttype="second")
    track.notes.append(symusic.Note(0.0, seconds, 60, 90, ttype="second"))
    score.tracks.append(track)
    path = tmp_path / f"held_{seconds:g}s.mid"
    score.dump_midi(str(path))
    return path


def test_an_upload_of_hours_is_cut_to_the_prompt_window_and_old_files_go(space, tmp_path):
    import wave

    app, _ = space
    # 0 = all, up to 60 s; a piece over 6 h is refused whole (tests/test_tokenization.py).
    for hours, prompt_seconds, kept in ((0.5, 0, 60), (5, 10, 10)):
        upload = held_note_midi(tmp_path, hours * 3600)
        assert upload.stat().st_size < 50
        # Before: the whole 30 minutes were continued and rendered (52 s, 5.8 GB, 0.9 GB of WAVs kept).
        updates = list(
            app.compose(1.0, 0, 1.0, 5, 0, False, app.NO_PROMPT, str(upload), prompt_seconds, False)
        )
        audio, _, midi_path, facts, _, _ = updates[-1]
        assert (
            f"continuing the first {kept} s of your piece “held {hours * 3600:g}s” ({kept}.0 s, 1 notes"
            in facts
        )
        with wave.open(audio) as wav:
            assert wav.getnframes() / wav.getframerate() < kept + 5 + 2  # prompt, new music, ring-out
        info = app.describe_upload(str(upload), prompt_seconds)
        assert f"**the first {kept} s of your piece “held {hours * 3600:g}s”**" in info
        assert f"the file lasts {hours * 3600:.1f} s" in info
        # Only the last update's WAV and MIDI stay in the request's folder (Gradio has its own copies).
        assert sorted(p.suffix for p in Path(audio).parent.rglob("*") if p.is_file()) == [".mid", ".wav"]
        assert Path(midi_path).is_file() and len(updates) >= 2
        markers = symusic.Score(midi_path).to("second").markers  # where the new music starts
        assert [(m.time, m.text) for m in markers] == [(kept, "hf_music: new music starts here")]
    requests = [folder for folder in app.OUTPUT_DIR.iterdir() if folder.is_dir()]
    assert len(requests) <= app.KEPT_REQUESTS
    assert app.demo.delete_cache == app.GRADIO_CACHE_CLEANUP


def test_a_short_upload_is_described_whole(space, tmp_path):
    app, _ = space
    path = held_note_midi(tmp_path, 2)  # 2 s: all of it is continued
    assert app.describe_upload(str(path), 10) == (
        "Generate continues **your piece “held 2s”** (2.0 s, 1 notes from C4 to C4)."
    )


def test_stop_says_the_piece_stopped(space):
    app, _ = space
    first = next(app.compose(1.0, 0, 1.0, 20, 0, False, app.NO_PROMPT, None, 0, False, None))
    facts = first[3]
    assert "**Writing: " in facts
    message, after = app.stopped(facts)
    assert "Stopped" in message and "Writing" not in after
    assert re.match(r"\*\*Stopped after [\d.]+ of 20 s\*\*", after), after


def test_listens_on_this_machine_unless_on_a_space_or_told(space, monkeypatch):
    app, _ = space
    monkeypatch.delenv("GRADIO_SERVER_NAME", raising=False)
    monkeypatch.delenv("SPACE_ID", raising=False)
    assert app.server_name() == "127.0.0.1"
    monkeypatch.setenv("SPACE_ID", "user/music")
    assert app.server_name() == "0.0.0.0"
    monkeypatch.setenv("GRADIO_SERVER_NAME", "192.168.1.5")
    assert app.server_name() == "192.168.1.5"


@pytest.mark.slow
def test_the_output_folder_is_removed_at_exit():
    import subprocess
    import sys

    load = (
        "import importlib.util; spec = importlib.util.spec_from_file_location('app', 'space/app.py'); "
        "app = importlib.util.module_from_spec(spec); spec.loader.exec_module(app); print(app.OUTPUT_DIR)"
    )
    result = subprocess.run(
        [sys.executable, "-c", load], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    folder = Path(result.stdout.strip().splitlines()[-1])
    assert folder.name.startswith("hf_music_space_") and not folder.exists()
