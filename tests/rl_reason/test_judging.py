"""rl_reason.judging: a math_judge backend on a rollout engine (the tiny random model)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rewards.math.judge import math_judge, set_judge

WORDS = r"\boxed{\text{a squared minus b squared}}"
GOLD = {"answer": "a^2 - b^2"}


@pytest.fixture(autouse=True)
def _no_backend():
    yield
    set_judge(None)


def test_engine_backend_with_the_tiny_model():
    from rl_reason.config import load_config
    from rl_reason.judging import engine_judge
    from rl_reason.model_zoo import resolve_model
    from rl_reason.policy import load_policy
    from rl_reason.rollout.hf import HFEngine

    cfg = load_config(Path(__file__).resolve().parents[2] / "recipes" / "test" / "tiny_grpo.yaml", [])
    resolve_model("tiny-random")
    policy = load_policy(cfg.model, cfg.lora, seed=0)
    backend = engine_judge(HFEngine(policy), policy.tokenizer, max_new_tokens=4)
    replies = backend(["Is 1/2 equal to 0.5?", "Is 2 equal to 3?"])
    assert len(replies) == 2 and all(isinstance(r, str) for r in replies)
    set_judge(backend)
    r = math_judge(WORDS, GOLD)
    # a random model answers noise: whatever it says is read only as yes / no / undecided
    assert r.info["judge"] in ("yes", "no", "undecided") and r.correct is (r.info["judge"] == "yes")


# --------------------------------------------------------------------------- from the recipe

TINY = Path(__file__).resolve().parents[2] / "recipes" / "test" / "tiny_grpo.yaml"
RIGHT = r"so \boxed{(a-b)(a+b)}"  # the rules say yes
REJECTED = WORDS  # the rules say no: the judge is asked
HEDGE = r"\boxed{a^2} or \boxed{b^2}"  # a rule refusal: never asked


class Stub:
    def __init__(self, reply="yes"):
        self.reply, self.prompts = reply, []

    def __call__(self, prompts):
        self.prompts += list(prompts)
        return [self.reply for _ in prompts]


def _judge_recipe(tmp_path, *extra):
    from rl_reason.config import load_config

    return load_config(
        TINY,
        [
            "rewards.checkers=[{name: math_judge}]",
            "rewards.judge.model=tiny-random",
            f"rewards.judge.cache_file={tmp_path / 'verdicts.jsonl'}",
            *extra,
        ],
    )


def test_a_recipe_judge_is_asked_by_forked_workers_only_after_the_rules_reject(tmp_path):
    from rewards.runner import Scorer
    from rl_reason.judging import start_judge

    cfg = _judge_recipe(tmp_path)
    service = start_judge(cfg, tmp_path)
    try:
        with Scorer(["math_judge"], workers=2, timeout_s=60) as scorer:
            batch = scorer.score([RIGHT, REJECTED, HEDGE, REJECTED], [GOLD] * 4)
        info = batch.info["math_judge"]
        assert batch.correct[0] is True and "judge" not in info[0]
        assert info[1]["judge"] in ("yes", "no", "undecided")
        assert batch.correct[1] is (info[1]["judge"] == "yes")
        assert batch.correct[2] is False and "judge" not in info[2]
        # one question reached the model: the repeat came from a cache
        assert service.n_asked == 1 and "a squared" in service.asked[0] and "a^2 - b^2" in service.asked[0]
        assert batch.errors == {"math_judge": 0}
    finally:
        service.close()
    rows = (tmp_path / "verdicts.jsonl").read_text().splitlines()
    assert len(rows) == 1 and "a squared" in rows[0]


def test_the_service_pays_a_yes_and_its_cache_file_outlives_it(tmp_path):
    from rewards.runner import Scorer
    from rl_reason.judging import JudgeService

    cache = tmp_path / "v.jsonl"
    stub = Stub("Yes.")
    with JudgeService(stub, cache_file=str(cache)).install():
        with Scorer(["math_judge"], workers=2, timeout_s=30) as scorer:
            batch = scorer.score([REJECTED, RIGHT, HEDGE], [GOLD] * 3)
    assert batch.total == [1.0, 1.0, 0.0] and batch.info["math_judge"][0]["judge"] == "yes"
    assert len(stub.prompts) == 1
    # a second run (say, a resume) reads the verdict from the file: the model is not asked
    again = Stub("no")
    with JudgeService(again, cache_file=str(cache)).install():
        with Scorer(["math_judge"], workers=1, timeout_s=30) as scorer:
            assert scorer.score([REJECTED], [GOLD]).total == [1.0]
    assert again.prompts == []
    with pytest.raises(Exception, match="rewards.judge.model"):  # closed: nothing to ask
        math_judge(REJECTED, GOLD)


def test_spawned_workers_find_the_service_through_the_environment():
    import threading

    from rewards.runner import Scorer
    from rl_reason.judging import JudgeService

    stub = Stub("yes")
    service = JudgeService(stub).install()
    try:
        with Scorer(["math_judge"], workers=1, timeout_s=60, start_method="spawn") as scorer:
            assert scorer.score([REJECTED], [GOLD]).total == [1.0]
        assert len(stub.prompts) == 1
    finally:
        service.close()
    assert not [t for t in threading.enumerate() if t.name == "judge-accept" and t.is_alive()]


def test_the_trainer_serves_the_recipe_judge_to_its_scorer(tmp_path):
    from rl_reason.trainer import Trainer

    cfg = _judge_recipe(tmp_path, "eval.at_start=false", "eval.at_end=false")
    trainer = Trainer(cfg, tmp_path / "run")
    try:
        assert trainer.judge is not None
        batch = trainer.scorer.score([REJECTED, RIGHT], [GOLD, GOLD])
        assert "judge" in batch.info["math_judge"][0] and "judge" not in batch.info["math_judge"][1]
        assert trainer.judge.n_asked == 1
    finally:
        trainer.scorer.close()
        trainer.judge.close()
        trainer.engine.close()


@pytest.mark.parametrize(
    "overrides,needle",
    [
        (["rewards.checkers=[{name: math_judge}]"], "rewards.judge.model: checkers[0] is math_judge"),
        (["rewards.judge.model=./no/such/dir"], "rewards.judge.model: './no/such/dir': no such directory"),
        (["rewards.judge.engine=llama"], "rewards.judge.engine: 'llama' is not one of: hf, vllm, server"),
        (["rewards.judge.max_new_tokens=0"], "rewards.judge.max_new_tokens: must be > 0"),
    ],
)
def test_a_bad_judge_config_is_one_line_exit_2(overrides, needle, capsys):
    from rl_reason.cli import main

    assert main(["validate", str(TINY), *overrides]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and "\n" not in err, err


def test_a_judge_model_that_does_not_load_is_a_config_error(tmp_path):
    from rl_reason.errors import ConfigError
    from rl_reason.judging import start_judge

    (tmp_path / "empty").mkdir()
    cfg = _judge_recipe(tmp_path, f"rewards.judge.model={tmp_path / 'empty'}")
    with pytest.raises(ConfigError, match=r"^rewards\.judge\.model=.*cannot load it as a chat model"):
        start_judge(cfg)
