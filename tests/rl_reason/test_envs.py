"""The environment registry: by name, module:function, entry point; errors name the fix."""

import pytest

from rl_reason import envs
from rl_reason.errors import ConfigError


def test_builtin_python_resolves_and_makes_fresh_envs():
    make = envs.make_factory(["python"], {"timeout_s": 1})
    a, b = make(), make()
    assert a is not b
    assert isinstance(a, envs.Environment)
    assert a.limits.timeout_s == 1.0


def test_module_path_and_registered_name():
    from tests.rl_reason._envs import Letters

    assert envs.resolve("tests.rl_reason._envs:Letters") is Letters
    envs.register("letters_test", Letters)
    try:
        assert envs.resolve("letters_test") is Letters
        assert "letters_test" in envs.known_names()
    finally:
        envs._REGISTERED.pop("letters_test")


def test_entry_point_group(monkeypatch):
    from tests.rl_reason._envs import Letters

    class EP:
        name = "ep_letters"

        def load(self):
            return Letters

    monkeypatch.setattr(envs, "_entry_points", lambda: {"ep_letters": EP()})
    assert envs.resolve("ep_letters") is Letters


def test_unknown_names_and_bad_params_are_config_errors():
    with pytest.raises(ConfigError, match="known names: python"):
        envs.resolve("nope")
    with pytest.raises(ConfigError, match="no_such_module_xyz"):
        envs.resolve("no_such_module_xyz:Env")
    with pytest.raises(ConfigError, match="has no attribute"):
        envs.resolve("tests.rl_reason._envs:Missing")
    with pytest.raises(ConfigError, match="tool_params"):
        envs.make_factory(["python"], {"no_such_param": 1})
    with pytest.raises(ConfigError, match="one environment"):
        envs.make_factory(["python", "python"], {})


def test_recipe_validation_names_the_field(tiny_cfg):
    with pytest.raises(ConfigError, match="rollout.tools"):
        tiny_cfg("rollout.tools=[nope]")
    cfg = tiny_cfg("rollout.tools=[python]", "rollout.max_tool_calls=3")
    assert cfg.rollout.tools == ["python"] and cfg.rollout.max_tool_calls == 3
    # multi-turn rollouts are sampled synchronously: asynchronous sampling with tools is refused
    with pytest.raises(ConfigError, match="rollout.tools.*max_staleness=0"):
        tiny_cfg("rollout.tools=[python]", "rollout.max_staleness=1")
    with pytest.raises(ConfigError, match="routing_replay.*max_staleness=0"):
        tiny_cfg("rollout.tools=[python]", "algorithm.routing_replay=true")


def test_the_documented_retry_example_shows_failures_then_ends():
    from tests.rl_reason._envs import RetryTests

    env = RetryTests(tries=3)
    env.reset({"tests": "assert add(2, 3) == 5\nassert add(0, 0) == 0"})
    wrong = env.step("```python\ndef add(a, b):\n    return a - b\n```")
    assert wrong.observation.startswith("\nThe tests failed:") and wrong.error and not wrong.done
    right = env.step("```python\ndef add(a, b):\n    return a + b\n```")
    assert right.done and right.observation is None
    env.reset({"tests": "assert add(1, 1) == 2"})
    assert all(not env.step("def add(a, b): return 0").done for _ in range(2))
    assert env.step("def add(a, b): return 0").done  # the third try is the last
