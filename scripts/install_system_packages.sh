#!/usr/bin/env bash
# System packages hf_music uses beyond pip, from Debian/Ubuntu's apt, each installed only when missing:
#   bash scripts/install_system_packages.sh          # audio + the test suite's browser and Node.js
#   bash scripts/install_system_packages.sh audio    # only WAV rendering: FluidSynth + a GM soundfont
# Audio: libfluidsynth3 and musescore-general-soundfont-small (MuseScore General Lite, 39 MB, a sampled
# Steinway D piano; the Space lists the same in space/packages.txt);
# tests: Chromium for the Space's browser test, Node.js and npm for the tokenizer.json check in
# JavaScript (tests/test_tokenization.py installs @huggingface/tokenizers with npm). Elsewhere
# (macOS, Windows), install FluidSynth and a General MIDI soundfont yourself (set HF_MUSIC_SOUNDFONT
# to it) and, for the tests, a Chromium and Node.js.
set -euo pipefail
wanted=()
ldconfig -p 2>/dev/null | grep -q libfluidsynth || wanted+=(libfluidsynth3)
[ -f /usr/share/sounds/sf3/MuseScore_General_Lite.sf3 ] || wanted+=(musescore-general-soundfont-small)
if [ "${1:-all}" != audio ]; then
    command -v chromium >/dev/null || wanted+=(chromium)
    command -v node >/dev/null || wanted+=(nodejs)
    command -v npm >/dev/null || wanted+=(npm)
fi
if [ ${#wanted[@]} -eq 0 ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null; then
    echo "install_system_packages: no apt-get here; install these yourself: ${wanted[*]}" >&2
    exit 1
fi
SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
echo "installing ${wanted[*]} with apt-get"
$SUDO apt-get update -q >/dev/null
$SUDO apt-get install -y -q --no-install-recommends "${wanted[@]}" >/dev/null
