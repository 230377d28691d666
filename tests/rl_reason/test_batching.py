"""Token-budget micro-batching (rl_reason/batching.py)."""

from rl_reason.batching import token_budget_batches


def test_token_budget_batches():
    lengths = [10, 50, 20, 40, 5]
    batches = token_budget_batches(lengths, 100)
    # longest first: [50, 40] -> 100; then [20, 10, 5] -> 60
    assert batches == [[1, 3], [2, 0, 4]]
    assert sorted(i for b in batches for i in b) == list(range(5))
    for b in batches:
        assert max(lengths[i] for i in b) * len(b) <= 100
    # a sequence over budget gets its own batch
    assert token_budget_batches([300, 10], 100) == [[0], [1]]
