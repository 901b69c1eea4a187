"""Streaming a piece in chunks: the streamed piece is the piece one generate_ids call gives."""

from __future__ import annotations

import itertools
import threading

from hf_music import (
    MusicTransformerConfig,
    MusicTransformerForCausalLM,
    bundled_prompts,
    generate_ids,
    load_default_model,
)
from hf_music.generation import prompt_to_ids
from hf_music.streaming import stream_ids


def test_streamed_piece_equals_one_generate_ids_call():
    model, tokenizer = load_default_model()
    prompt = prompt_to_ids(bundled_prompts()["chopin_etude_op10_no9"], tokenizer, 5)
    sampling = dict(pitch_temperature=1.2, top_k=None, top_p=1.0)
    lock = threading.Lock()
    streamed = list(
        stream_ids(model, tokenizer, prompt, 6, seed=5, max_new_tokens=4096, lock=lock, **sampling)
    )
    whole = generate_ids(model, tokenizer, prompt, max_new_tokens=4096, max_seconds=6, seed=5, **sampling)[0]
    assert len(streamed) >= 4 and [done for _, done in streamed] == [False] * (len(streamed) - 1) + [True]
    assert streamed[-1][0] == whole
    assert not lock.locked()
    for (shorter, _), (longer, _) in itertools.pairwise(streamed):
        assert longer[: len(shorter)] == shorter  # each update continues the last one


def test_updates_come_every_five_seconds_after_the_first_ones():
    model, tokenizer = load_default_model()
    streamed = list(stream_ids(model, tokenizer, None, 30, seed=2, max_new_tokens=4096))
    seconds = [tokenizer.seconds(ids) for ids, _ in streamed]
    assert len(streamed) >= 8  # 1, 2.5, 5, 8, 12, 16, 21, 26 s, then the end
    assert all(0 < later - earlier <= 5.5 for earlier, later in itertools.pairwise(seconds[5:]))
    assert (
        streamed[-1][0]
        == generate_ids(model, tokenizer, None, max_new_tokens=4096, max_seconds=30, seed=2)[0]
    )


def test_streaming_past_the_context_follows_the_sliding_window():
    # A 64-event model, from silence and from a prompt longer than its context, with a token cap
    # that ends mid-window.
    _, tokenizer = load_default_model()
    prompt = prompt_to_ids(bundled_prompts()["chopin_etude_op10_no9"], tokenizer, 5)
    tiny = MusicTransformerForCausalLM(MusicTransformerConfig.from_preset("tiny", n_positions=64)).eval()
    for start, cap in (([tokenizer.bos_token_id], 200), (prompt[:90], 150)):
        ids = [ids for ids, _ in stream_ids(tiny, tokenizer, start, 600, seed=1, max_new_tokens=cap)]
        assert ids[-1] == generate_ids(tiny, tokenizer, start, max_new_tokens=cap, max_seconds=600, seed=1)[0]
        assert len(ids[-1]) - len(start) == cap and len(ids) >= 3
