from pathlib import Path

import pytest
import yaml

from rl_reason.config import (
    CheckerConfig,
    RunConfig,
    apply_overrides,
    config_hash,
    dump_yaml,
    from_dict,
    load_config,
    to_dict,
)
from rl_reason.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "recipes" / "test" / "tiny_grpo.yaml"


def write(tmp_path, text):
    p = tmp_path / "r.yaml"
    p.write_text(text)
    return p


def test_defaults_are_valid():
    cfg = load_config(None)
    assert cfg.algorithm.name == "grpo"
    assert cfg.rollout.num_generations >= 2


def test_every_shipped_recipe_validates():
    recipes = sorted((ROOT / "recipes").rglob("*.yaml"))
    recipes = [r for r in recipes if "accelerate" not in r.parts]
    assert TINY in recipes
    for r in recipes:
        load_config(r)


def test_overrides_parse_yaml_scalars(tmp_path):
    cfg = load_config(
        TINY, ["train.steps=7", "train.lr=3e-4", "rollout.stop=['</answer>']", "logging.wandb=true"]
    )
    assert cfg.train.steps == 7
    assert cfg.train.lr == pytest.approx(3e-4)
    assert cfg.rollout.stop == ["</answer>"]
    assert cfg.logging.wandb is True


def test_run_name_defaults_to_recipe_stem():
    assert load_config(TINY).logging.run_name == "tiny_grpo"


@pytest.mark.parametrize(
    "text, key, words",
    [
        ("train: {stepz: 3}", "train.stepz", "allowed keys here: steps"),
        ("modle: {name: x}", "modle", "allowed keys here: model"),
        ("train: {lr: -0.1}", "train.lr", "must be > 0"),
        ("train: {steps: many}", "train.steps", "expected an integer"),
        ("rollout: {num_generations: 1}", "rollout.num_generations", "needs >= 2"),
        ("algorithm: {name: sac}", "algorithm.name", "not one of"),
        ("lora: 3", "lora", "expected a mapping"),
        ("logging: {wandb: maybe}", "logging.wandb", "true or false"),
        ("rollout: {top_p: 1.5}", "rollout.top_p", "(0, 1]"),
        ("data: {synthetic: {ops: ['/']}}", "data.synthetic.ops[0]", "not one of"),
        ("data: {prompt_template: 'no placeholder'}", "data.prompt_template", "{prompt}"),
        ("rewards: {checkers: [{weight: 1}]}", "rewards.checkers[0].name", "is required"),
        ("rewards: {checkers: [{name: a}, {name: a}]}", "rewards.checkers[1]", "used twice"),
    ],
)
def test_errors_name_key_file_and_allowed(tmp_path, text, key, words):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    msg = str(err.value)
    assert msg.startswith(key + ":"), msg
    assert words in msg
    assert str(path) in msg
    assert "\n" not in msg
    assert err.value.exit_code == 2


def test_broken_yaml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "train: [unclosed"))
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="key.path=value"):
        load_config(TINY, ["train.steps"])


def test_resolved_dump_round_trips():
    cfg = load_config(TINY, ["train.steps=9"])
    again = from_dict(yaml.safe_load(dump_yaml(cfg)))
    assert to_dict(again) == to_dict(cfg)
    assert config_hash(again) == config_hash(cfg)
    assert config_hash(load_config(TINY)) != config_hash(cfg)


def test_apply_overrides_does_not_mutate():
    data = {"train": {"steps": 1}}
    out = apply_overrides(data, ["train.steps=2", "model.name=x"])
    assert data == {"train": {"steps": 1}}
    assert out == {"train": {"steps": 2}, "model": {"name": "x"}}


def test_schema_metadata_is_the_source_of_choices_bounds_and_resume_rules():
    import typing

    from rl_reason.config import (
        AlgorithmConfig,
        ModelConfig,
        choices,
        field_meta,
        fixed_on_resume,
        schema_fields,
    )

    hints = typing.get_type_hints(ModelConfig)
    assert choices(hints["dtype"]) == ("float32", "bfloat16", "float16")
    # algorithm.name's choices are the registry's, not a list in the schema
    from rl_reason.algorithms import registry

    assert choices(typing.get_type_hints(AlgorithmConfig)["name"]) == ()
    assert set(registry.names()) >= {"grpo", "dr_grpo", "rloo", "ppo", "reinforce_pp"}
    # the keys a resume refuses (runs.py read a hand-kept list of these before)
    assert set(fixed_on_resume()) == {
        "model.name",
        "model.dtype",
        "lora.r",
        "lora.alpha",
        "lora.target_modules",
        "lora.experts",
        "lora.train_router",
        "algorithm.name",
        "data.source",
        "data.config_name",
        "data.split",
        "data.prompt_field",
        "data.fields",
        "data.shuffle",
        "data.limit",
        "rollout.prompts_per_step",
        "rollout.num_generations",
        "train.seed",
        *(
            f"data.synthetic.{k}"
            for k in ("ops", "min_value", "max_value", "num_terms", "num_train", "num_eval")
        ),
        # stages (issue 19): the starting adapter, the SFT data and optimisation, the teacher
        "model.init_adapter",
        *(f"sft.{k}" for k in ("source", "config_name", "split", "prompt_field", "completion_field")),
        *(f"sft.{k}" for k in ("messages_field", "limit", "epochs", "batch_size", "grad_accum", "lr")),
        *(f"sft.{k}" for k in ("warmup_steps", "lr_schedule")),
        *(f"teacher.{k}" for k in ("model", "adapter", "dtype")),
    }
    for path, f, _ in schema_fields():
        assert field_meta(f).doc.strip(), f"{path} has no doc"


@pytest.mark.parametrize(
    "edit, key, words",
    [
        (lambda c: setattr(c.model, "dtype", "float8"), "model.dtype", "not one of: float32"),
        (lambda c: setattr(c.data.synthetic, "ops", ["+", "%"]), "data.synthetic.ops[1]", "not one of"),
        (
            lambda c: setattr(c.rollout, "temperature", 0.0),
            "rollout.temperature",
            "must be > 0, got 0.0: RL sampling",
        ),
        (lambda c: setattr(c.lora, "dropout", 1.0), "lora.dropout", "must be in [0, 1), got 1.0"),
        (lambda c: setattr(c.algorithm, "critic_lam", 1.5), "algorithm.critic_lam", "in [0, 1]"),
        (lambda c: setattr(c.data, "limit", 0), "data.limit", "must be > 0"),
        (
            lambda c: setattr(c.model, "device", "cpu") or setattr(c.model, "dtype", "float16"),
            "model.dtype",
            "not supported on the CPU",
        ),
        (
            lambda c: c.rewards.checkers.append(CheckerConfig(name="")),
            "rewards.checkers[1].name",
            "is required",
        ),
        (
            lambda c: setattr(c.data.synthetic, "min_value", 10) or setattr(c.data.synthetic, "max_value", 2),
            "data.synthetic.min_value",
            "10 > max_value 2",
        ),
        (
            lambda c: setattr(c.rollout, "engine", "server"),
            "rollout.servers",
            "needs at least one server URL",
        ),
    ],
)
def test_validate_checks_configs_built_in_code(edit, key, words):
    from rl_reason.config import validate

    cfg = RunConfig()
    edit(cfg)
    with pytest.raises(ConfigError) as err:
        validate(cfg, "code")
    assert str(err.value).startswith(key + ":"), str(err.value)
    assert words in str(err.value) and "(in code)" in str(err.value)


def test_runner_timeout_must_leave_room_for_the_sandbox_timeout():
    from rl_reason.config import check_checkers_resolve

    code = ["rewards.checkers=[{name: code_tests}]"]
    cfg = load_config(TINY, code + ["rewards.timeout_s=5"])  # code_tests' sandbox default: 5 s
    with pytest.raises(
        ConfigError, match=r"rewards.timeout_s: 5 s .*checkers\[0\] \(code_tests\).*at least 7"
    ):
        check_checkers_resolve(cfg, "r.yaml")
    check_checkers_resolve(load_config(TINY, code + ["rewards.timeout_s=7"]))
    explicit = ["rewards.checkers=[{name: code_tests, params: {timeout_s: 1}}]", "rewards.timeout_s=3"]
    check_checkers_resolve(load_config(TINY, explicit))
    check_checkers_resolve(load_config(TINY, code + ["rewards.timeout_s=5", "rewards.workers=0"]))


def test_policy_loss_is_a_registered_name():
    assert load_config(TINY, ["algorithm.policy_loss=gspo"]).algorithm.policy_loss == "gspo"
    with pytest.raises(ConfigError, match="algorithm.policy_loss.*'ppo2' is not one of: clip, gspo"):
        load_config(TINY, ["algorithm.policy_loss=ppo2"])


def test_routing_replay_needs_the_hf_engine_and_no_checkpointing():
    assert load_config(TINY, ["algorithm.routing_replay=true"]).algorithm.routing_replay
    with pytest.raises(
        ConfigError, match="rollout.engine=vllm does not report the experts.*use rollout.engine=hf"
    ):
        load_config(TINY, ["algorithm.routing_replay=true", "rollout.engine=vllm"])
    with pytest.raises(ConfigError, match="gradient_checkpointing"):
        load_config(TINY, ["algorithm.routing_replay=true", "model.gradient_checkpointing=true"])
