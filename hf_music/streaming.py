"""A piece in chunks, for apps that play music while it is written (the Space, a notebook).

`stream_ids` yields the ids after each chunk of new music; its last ids are exactly what one
``generate_ids(..., seed=seed)`` call returns, so a streamed piece and a batch piece are the same
piece. Each chunk is one `generate_ids` call that continues the ids so far with the request's own
random state (forked from torch's global one, so requests never draw from each other's stream).
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from .decoding import reprime_length
from .generation import generate_ids, prompt_to_ids, time_steps

# Seconds of new music after which the listener gets an update: a small first chunk for a quick
# first sound, then longer ones (each chunk re-reads the piece so far), then every 5 s.
CHUNK_ENDS = (1.0, 2.5, 5.0, 8.0, 12.0, 16.0)
CHUNK_SECONDS = 5.0


def stream_ids(
    model, tokenizer, prompt, seconds: float, seed: int, max_new_tokens: int, chunk_ends=CHUNK_ENDS,
    lock=None, **sampling,
):  # fmt: skip
    """Yield (ids so far, prompt included; done) after each chunk of `seconds` of new music.

    The last ids equal ``generate_ids(model, tokenizer, prompt, max_new_tokens, seed=seed,
    max_seconds=seconds, **sampling)[0]``: the chunks draw from one random stream seeded once, the
    grammar state is rebuilt from the whole history each chunk, and chunks end only where that
    call's sliding window re-primes (once the piece outgrows the model's context, a chunk is a
    whole window: the first ``context`` tokens stream in chunks ending at `chunk_ends` seconds and
    then every CHUNK_SECONDS, later ones in windows). ``lock`` (a threading.Lock, say) is held during each chunk, for apps
    that share one model between threads.
    """
    lock = lock or contextlib.nullcontext()
    if tokenizer.time_step is None:  # no clock in the ids to cut chunks at: one call, then the piece
        with lock:
            yield generate_ids(model, tokenizer, prompt=prompt, max_new_tokens=max_new_tokens, seed=seed,
                               max_seconds=seconds, **sampling)[0], True  # fmt: skip
        return
    ids = prompt_to_ids(prompt, tokenizer)
    start, context = len(ids), model.config.n_positions
    window_step = context - reprime_length(context)  # the tokens each re-primed window adds in generate_ids
    first_window_end = max(start, context)
    step_ms = tokenizer.time_resolution_ms
    needed = max(1, round(seconds * 1000 / step_ms))
    ends = [*chunk_ends, *np.arange(chunk_ends[-1] + CHUNK_SECONDS, seconds, CHUNK_SECONDS)]
    targets = [round(end * 1000 / step_ms) for end in ends if round(end * 1000 / step_ms) < needed]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        rng_state = torch.get_rng_state()
    done_steps = 0
    while True:
        length = len(ids)
        budget = max_new_tokens - (length - start)
        if length < context:  # inside the first window: stop at the next small target or the window's end
            budget = min(budget, context - length)
            target = next((t for t in targets if t > done_steps), needed)
        else:  # past it: one whole re-primed window per chunk, as generate_ids does
            budget = min(budget, window_step - (length - first_window_end) % window_step)
            target = needed
        with lock, torch.random.fork_rng(devices=[]):
            torch.set_rng_state(rng_state)
            ids = generate_ids(model, tokenizer, prompt=ids, max_new_tokens=budget,
                               max_seconds=(target - done_steps) * step_ms / 1000, **sampling)[0]  # fmt: skip
            rng_state = torch.get_rng_state()
        done_steps = int(time_steps(torch.tensor(ids[start:]), tokenizer)) if len(ids) > start else 0
        done = done_steps >= needed or len(ids) - start >= max_new_tokens or len(ids) == length
        yield ids, done
        if done:
            return


__all__ = ["CHUNK_ENDS", "CHUNK_SECONDS", "stream_ids"]
