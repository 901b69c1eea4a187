"""Seconds from clicking Generate to a playable audio element in the Space, in a real browser.

    python scripts/benchmark_space.py --seconds 20 --runs 5

Launches space/app.py on 127.0.0.1 (model: $HF_MUSIC_MODEL or the embedded default), drives
Debian's Chromium with Playwright, and for each run clicks Generate and waits until the audio
player has a new source. Prints every run and the median.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import socket
import statistics
import time
from pathlib import Path

APP = Path(__file__).resolve().parents[1] / "space" / "app.py"


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
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    timings = []
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/")
            page.locator("#seconds input[type=number]").fill(str(args.seconds))
            page.locator("#seconds input[type=number]").press("Enter")
            previous = None
            for run in range(args.runs):
                started = time.perf_counter()
                page.locator("#generate").click()
                audio = page.locator("#audio audio[src]").first
                pattern = (
                    re.compile(r"^(blob:|https?:)")
                    if previous is None
                    else re.compile(f"^(?!{re.escape(previous)}$)")
                )
                expect(audio).to_have_attribute("src", pattern, timeout=120_000)
                timings.append(time.perf_counter() - started)
                previous = audio.get_attribute("src")
                facts = page.locator("#facts").inner_text()
                print(f"run {run + 1}: {timings[-1]:.2f} s click to audio | {facts}")
            browser.close()
    finally:
        app.demo.close()
    print(
        f"median {statistics.median(timings):.2f} s, max {max(timings):.2f} s for {args.seconds} s of music"
    )


if __name__ == "__main__":
    main()
