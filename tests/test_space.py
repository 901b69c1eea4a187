"""The Gradio Space (space/app.py): in a real Chromium through Playwright, and through gradio_client.

The app runs in this process on 127.0.0.1 with the model it would use on a Space
($HF_MUSIC_MODEL, else the checkpoint embedded in hf_music).
"""

from __future__ import annotations

import importlib.util
import os
import re
import socket
from pathlib import Path

import pytest
import symusic
from conftest import BAD_MIDI, REPO_ROOT

CHROMIUM = "/usr/bin/chromium"
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


def test_space_readme_front_matter_matches_the_pinned_gradio():
    from huggingface_hub import SpaceCard

    card = SpaceCard.load(REPO_ROOT / "space" / "README.md")
    pyproject = (REPO_ROOT / "pyproject.toml").read_text()
    assert card.data.sdk == "gradio" and card.data.app_file == "app.py"
    assert f'"gradio=={card.data.sdk_version}"' in pyproject
    assert card.data.license == "cc-by-nc-sa-4.0" and card.data.short_description
    assert (REPO_ROOT / "space" / "packages.txt").read_text().split() == [
        "libfluidsynth3",
        "timgm6mb-soundfont",
    ]


def test_browser_slider_generate_audio_midi_and_bad_upload(space):
    from playwright.sync_api import expect, sync_playwright

    _, url = space
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 1100})
        page.goto(url)
        # Move the temperature slider (the range input; its number box must follow).
        page.locator("#temperature input[type=range]").fill("1.4")
        expect(page.locator("#temperature input[type=number]")).to_have_value("1.4")
        page.locator("#generate").click()

        # Gradio's waveform player gets the rendered WAV as its source.
        audio = page.locator("#audio audio[src]").first
        expect(audio).to_have_attribute("src", re.compile(r"^(blob:|https?:)"), timeout=60_000)
        expect(page.locator("#midi a[href$='.mid']")).to_be_visible(timeout=60_000)
        expect(page.locator("#facts")).to_contain_text("temperature 1.4")
        page.screenshot(path=str(ARTIFACTS / "space_generate.png"), full_page=True)
        assert (ARTIFACTS / "space_generate.png").stat().st_size > 10_000

        # A file that is not MIDI: the user sees the problem, named, not a traceback.
        page.locator("#upload input[type=file]").set_input_files(str(BAD_MIDI / "not_midi.mid"))
        page.locator("#generate").click()
        error = page.get_by_text("not a valid MIDI file")
        expect(error.first).to_be_visible(timeout=30_000)
        expect(page.get_by_text("Traceback")).to_have_count(0)
        page.wait_for_timeout(1000)  # let the toast finish sliding in before the screenshot
        page.screenshot(path=str(ARTIFACTS / "space_bad_upload.png"))  # the toast is fixed to the viewport
        browser.close()


def test_gradio_client_two_users_at_once_with_two_temperatures(space):
    from gradio_client import Client

    _, url = space
    # Two clients (two sessions) submit at the same time; the queue runs them one after the
    # other and each gets its own piece back.
    jobs = {
        temperature: Client(url, verbose=False).submit(
            temperature,
            0,
            1.0,
            5,
            7,
            False,
            "(none: start from silence)",
            None,
            0,
            False,
            api_name="/compose",
        )
        for temperature in (1.0, 1.5)
    }
    results = {}
    for temperature, job in jobs.items():
        audio, _, midi_path, facts, seed = job.result(timeout=120)
        score = symusic.Score(midi_path)
        assert (
            score.note_num() > 0 and 1 <= score.to("second").end() <= 9
        )  # 5 s of events (trailing silence has no MIDI event)
        assert audio and Path(audio).stat().st_size > 5 * 22050  # ~5 s of 16-bit audio at least
        assert seed == 7 and f"temperature {temperature:g}" in facts
        results[temperature] = Path(midi_path).read_bytes()
    assert results[1.0] != results[1.5]  # same seed, another temperature: another piece


def test_bad_midi_files_give_a_named_error_not_a_traceback(space):
    import gradio as gr

    app, _ = space
    refused = {}
    for path in sorted(BAD_MIDI.iterdir()):
        try:
            app.compose(1.0, 0, 1.0, 2, 0, False, app.NO_PROMPT, str(path), 0, False, None)
        except gr.Error as error:
            refused[path.name] = error.message
    # corrupted_unexpected_EOF.mid still parses (symusic reads up to the damage): it is continued.
    assert sorted(refused) == sorted(p.name for p in BAD_MIDI.iterdir() if "unexpected_EOF" not in p.name)
    for name, message in refused.items():
        assert message.startswith(name + ": ")
    assert "no notes" in refused["no_notes.mid"] and "empty" in refused["zero_bytes.mid"]


def test_uploads_over_the_size_cap_are_refused_by_name(space, tmp_path):
    import gradio as gr

    app, _ = space
    big = tmp_path / "huge.mid"
    big.write_bytes(b"MThd" + bytes(app.MAX_UPLOAD_BYTES))
    with pytest.raises(gr.Error, match=r"huge\.mid is 1\.0 MB; the limit is 1 MB"):
        app.compose(1.0, 0, 1.0, 2, 0, False, app.NO_PROMPT, str(big), 0, False, None)


def test_without_a_soundfont_the_app_still_returns_midi_and_piano_roll(space, monkeypatch, tmp_path):
    app, _ = space
    monkeypatch.setenv("HF_MUSIC_SOUNDFONT", str(tmp_path / "no_such.sf2"))
    audio, figure, midi_path, facts, ids, _ = app.compose(
        1.0, 0, 1.0, 3, 0, False, app.NO_PROMPT, None, 0, False, None
    )
    assert audio is None and "Audio unavailable" in facts and "no_such.sf2 does not exist" in facts
    assert figure is not None and symusic.Score(midi_path).note_num() > 0 and len(ids) > 1
