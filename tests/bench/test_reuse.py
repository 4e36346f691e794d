"""The trace's ideal reuse on hand-made traces."""

from __future__ import annotations

from kvyard.bench.reuse import PromptTiming, block_keys, ideal_cached

B = 4


def seq(*ids):
    return list(ids)


def sequential(*prompts):
    """Each prompt sent at t=i, ready at t=i+0.5 (before the next one is sent)."""
    return [PromptTiming(t_send=i, t_ready=i + 0.5, ids=p) for i, p in enumerate(prompts)]


def test_block_aligned_longest_shared_prefix():
    a = list(range(10))  # blocks [0-3] [4-7], tail 8 9
    b = list(range(9)) + [99, 100]  # shares 9 tokens with a: 2 full blocks
    c = [0, 1, 2, 77] + list(range(4, 12))  # differs inside block 0
    assert ideal_cached(sequential(a, b, c), B) == [0, 8, 0]


def test_any_earlier_prompt_counts_not_just_the_previous():
    sys = list(range(100, 116))  # 4 blocks
    p1, p2, p3 = sys + [1] * 5, [7] * 20, sys + [2] * 9
    assert ideal_cached(sequential(p1, p2, p3), B) == [0, 0, 16]


def test_last_token_is_always_computed():
    p = list(range(8))
    assert ideal_cached(sequential(p, p), B) == [0, 4]  # not 8: (8 - 1) // 4 * 4
    assert ideal_cached(sequential(p, p + [9]), B) == [0, 8]


def test_only_prompts_whose_prefill_finished_count():
    p = list(range(12))
    concurrent = [PromptTiming(0.0, 1.0, p), PromptTiming(0.5, 1.5, p), PromptTiming(2.0, 3.0, p)]
    assert ideal_cached(concurrent, B) == [0, 0, 8]
    failed = [PromptTiming(0.0, None, p), PromptTiming(1.0, 1.5, p)]
    assert ideal_cached(failed, B) == [0, 0]


def test_unknown_ids_get_no_ideal_and_add_nothing():
    p = list(range(12))
    timings = [PromptTiming(0, 0.1, None), PromptTiming(1, 1.1, p), PromptTiming(2, 2.1, p)]
    assert ideal_cached(timings, B) == [None, 0, 8]


def test_keys_are_chained():
    assert block_keys([1, 2, 3, 4, 5, 6, 7, 8], B)[1] != block_keys([9, 9, 9, 9, 5, 6, 7, 8], B)[1]
    assert len(block_keys(list(range(11)), B)) == 2
