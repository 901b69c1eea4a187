"""Generate piano music with a Music Transformer and write MIDI files.

    python scripts/generate.py --out piece.mid                       # the embedded default model
    python scripts/generate.py --model user/music-transformer --prompt start.mid --num 3 --temperature 0.9

--model takes a checkpoint folder or a Hub id (loaded with trust_remote_code=True, so a
checkpoint made by hf_music works even where hf_music is a different version).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from hf_music.generation import generate_midi
from hf_music.resources import bundled_prompts, load_model


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", default=None, help="checkpoint folder or Hub id (default: the embedded model)"
    )
    parser.add_argument(
        "--prompt",
        default=None,
        help=f"MIDI file to continue, or a bundled one: {', '.join(bundled_prompts())}",
    )
    parser.add_argument(
        "--prompt_seconds", type=float, default=None, help="use only the first N seconds of the prompt"
    )
    parser.add_argument("--out", default="generated.mid", help="output .mid (numbered when --num > 1)")
    parser.add_argument("--num", type=int, default=1, help="number of pieces")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top_k", type=int, default=None)
    parser.add_argument("--top_p", type=float, default=None)
    parser.add_argument("--min_p", type=float, default=None)
    parser.add_argument("--max_new_tokens", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--unconstrained", action="store_true", help="turn grammar-aware sampling off")
    parser.add_argument("--device", default=None, help="e.g. cuda, cpu (default: where the model loads)")
    args = parser.parse_args(argv)

    model, tokenizer = load_model(args.model, args.device)
    prompt = bundled_prompts().get(args.prompt, args.prompt)
    started = time.perf_counter()
    scores = generate_midi(
        model,
        tokenizer,
        prompt=prompt,
        prompt_seconds=args.prompt_seconds,
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        min_p=args.min_p,
        seed=args.seed,
        num_return_sequences=args.num,
        constrained=not args.unconstrained,
        progress=True,
    )
    seconds = time.perf_counter() - started
    scores = scores if isinstance(scores, list) else [scores]
    out = Path(args.out)
    for i, score in enumerate(scores):
        path = out if len(scores) == 1 else out.with_name(f"{out.stem}_{i + 1}{out.suffix or '.mid'}")
        path.parent.mkdir(parents=True, exist_ok=True)
        score.dump_midi(str(path))
        print(f"wrote {path}: {score.note_num()} notes, {score.to('second').end():.1f} s")
    print(
        f"{args.num * args.max_new_tokens} tokens in {seconds:.1f} s ({args.num * args.max_new_tokens / seconds:.0f} tokens/s)"
    )


if __name__ == "__main__":
    main()
