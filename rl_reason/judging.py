"""A ``math_judge`` backend on the rollout engines (hf, vllm or a vLLM server).

``rewards`` may not import ``rl_reason`` or torch, so the judge model is injected from here:

    from rewards.math.judge import set_judge
    set_judge(engine_judge(engine, tokenizer))

The backend renders each question with the tokenizer's chat template, asks for a short greedy
reply and returns the text; ``rewards.math.judge`` only reads it as a yes/no verdict.
"""

from __future__ import annotations

from typing import Callable, Sequence

from rl_reason.rollout import SamplingParams

__all__ = ["engine_judge"]


def engine_judge(engine, tokenizer, max_new_tokens: int = 8) -> Callable[[Sequence[str]], list[str]]:
    """A ``prompts -> replies`` callable that asks ``engine`` (any RolloutEngine) greedily."""
    sampling = SamplingParams(max_new_tokens=max_new_tokens, temperature=1.0, greedy=True)

    def backend(prompts: Sequence[str]) -> list[str]:
        ids = []
        for p in prompts:
            if getattr(tokenizer, "chat_template", None):
                text = tokenizer.apply_chat_template(
                    [{"role": "user", "content": p}], add_generation_prompt=True, tokenize=False
                )
                ids.append(list(tokenizer(text, add_special_tokens=False)["input_ids"]))
            else:
                ids.append(list(tokenizer(p)["input_ids"]))
        rollouts = sorted(engine.generate(ids, 1, sampling), key=lambda r: r.prompt_index)
        return [r.completion_text for r in rollouts]

    return backend
