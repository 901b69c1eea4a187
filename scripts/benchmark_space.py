"""Seconds from clicking Generate to the first sound and to the whole piece, in a real browser.

    python scripts/benchmark_space.py --seconds 20 --runs 5

Launches space/app.py on 127.0.0.1 (model: $HF_MUSIC_MODEL or the embedded default), drives
Debian's Chromium with Playwright, and for each run clicks Generate and times
- first sound: the player holds the first (partial) audio file and shows its Play button;
- whole piece: the facts line reports the finished piece (its token count).
Each run starts from silence with its own seed. Prints every run and the medians.
"""

from __future__ import annotations

import argparse
import importlib.util
import socket
import statistics
import time
from pathlib import Path

APP = Path(__file__).resolve().parents[1] / "space" / "app.py"
FIRST_AUDIO = """(previous) => {
    const link = document.querySelector('#audio a.download-link');
    const play = document.querySelector("#audio button[aria-label='Play']");
    return link && play && link.getAttribute('href') !== previous;
}"""


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=20, help="seconds of music per click")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args(argv)

    from playwright.sync_api import expect, sync_playwright

    spec = importlib.util.spec_from_file_location("hf_music_space_app", APP)
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)
    app.model_and_tokenizer()  # the Space loads its model once, at its first request: not timed here
    from hf_music.audio import PianoRenderer

    PianoRenderer(app.SAMPLE_RATE).close()  # nor the soundfont's piano (loaded once per process)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    first_sound, whole = [], []
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/")
            page.locator("#seconds input[type=number]").fill(str(args.seconds))
            page.locator("#seconds input[type=number]").press("Enter")
            for run in range(args.runs):
                previous = page.evaluate(
                    "() => document.querySelector('#audio a.download-link')?.getAttribute('href') ?? null"
                )
                started = time.perf_counter()
                page.locator("#generate").click()
                page.wait_for_function(FIRST_AUDIO, arg=previous, timeout=120_000, polling=10)
                first_sound.append(time.perf_counter() - started)
                expect(page.locator("#facts")).to_contain_text("new tokens", timeout=300_000)
                whole.append(time.perf_counter() - started)
                facts = page.locator("#facts").inner_text()
                print(
                    f"run {run + 1}: first sound {first_sound[-1]:.2f} s, whole piece {whole[-1]:.2f} s | {facts}"
                )
            browser.close()
    finally:
        app.demo.close()
    print(
        f"median first sound {statistics.median(first_sound):.2f} s (max {max(first_sound):.2f}), "
        f"median whole piece {statistics.median(whole):.2f} s (max {max(whole):.2f}) for {args.seconds} s of music"
    )


if __name__ == "__main__":
    main()
