"""The checker registry: names, module paths, runtime registration, entry-point plugins."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import rewards
from rewards import RewardResult, UnknownCheckerError, as_result, known_names, register, resolve

ROOT = str(Path(__file__).resolve().parents[2])


def test_builtin_names_listed():
    names = known_names()
    for name in (
        "math_answer",
        "code_tests",
        "think_format",
        "boxed_format",
        "overlong_penalty",
        "length_penalty",
    ):
        assert name in names
    assert names == sorted(names)


def test_resolve_builtin_by_name():
    from rewards.format import think_format
    from rewards.shaping import length_penalty

    assert resolve("think_format") is think_format
    assert resolve("length_penalty") is length_penalty
    assert resolve("think_format")("<think>a</think> 1", {}).score == 1.0


def test_resolve_module_path():
    fn = resolve("tests.rewards._checkers:length")
    assert fn("abc", {}) == 3.0
    assert resolve("rewards.format:boxed_format") is resolve("boxed_format")


def test_resolve_callable_passthrough():
    def mine(completion, fields):
        return 1.0

    assert resolve(mine) is mine


def test_unknown_name_lists_known_names():
    with pytest.raises(UnknownCheckerError) as err:
        resolve("math_anwser")
    msg = str(err.value)
    assert "math_anwser" in msg
    for name in ("math_answer", "boxed_format", "overlong_penalty"):
        assert name in msg
    assert "module:function" in msg


@pytest.mark.parametrize(
    "path, match",
    [
        ("no_such_module_xyz:fn", "cannot import module 'no_such_module_xyz'"),
        ("tests.rewards._checkers:missing", "has no attribute 'missing'"),
        ("tests.rewards._checkers:", "package.module:function"),
        ("tests.rewards._checkers:C", None),
    ],
)
def test_bad_paths(path, match):
    if path.endswith(":C"):
        import tests.rewards._checkers as mod

        mod.C = 3  # not callable
        try:
            with pytest.raises(UnknownCheckerError, match="not callable"):
                resolve(path)
        finally:
            del mod.C
        return
    with pytest.raises(UnknownCheckerError, match=match):
        resolve(path)


def test_register_decorator_and_call():
    @register("test_registry_shout")
    def shout(completion, fields, times=1):
        return RewardResult(float(completion.count("!") * times), correct=None, info={"n": times})

    try:
        assert "test_registry_shout" in known_names()
        assert resolve("test_registry_shout") is shout
        assert resolve("test_registry_shout")("a!!", {}, times=2).score == 4.0
        register("test_registry_other", lambda c, f: 0.0)
        assert resolve("test_registry_other")("", {}) == 0.0
    finally:
        rewards._REGISTERED.pop("test_registry_shout", None)
        rewards._REGISTERED.pop("test_registry_other", None)
    assert "test_registry_shout" not in known_names()


def _make_plugin(tmp_path, name="demo_plugin_pkg", ep_name="demo_plugin"):
    pkg = tmp_path / name
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        textwrap.dedent(
            """
            from rewards import RewardResult

            def polite(completion, fields, word="please"):
                ok = word in completion.lower()
                return RewardResult(1.0 if ok else 0.0, correct=ok)
            """
        )
    )
    dist = tmp_path / f"{name}-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[rl_reason.rewards]\n{ep_name} = {name}:polite\n")
    return ep_name


def test_entry_point_plugin(tmp_path, monkeypatch):
    ep_name = _make_plugin(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert ep_name in known_names()
    fn = resolve(ep_name)
    assert fn("Please help", {}).score == 1.0
    assert fn("help", {}).correct is False
    # and through the runner's worker processes
    from rewards.runner import Scorer

    with Scorer([ep_name], workers=1) as s:
        b = s.score(["please", "no"], None)
    assert b.scores[ep_name] == [1.0, 0.0]
    assert b.correct == [True, False]


def test_entry_point_plugin_in_fresh_interpreter(tmp_path):
    """The plugin is found by name in a new process, as a recipe would name it."""
    _make_plugin(tmp_path, name="demo_plugin_two", ep_name="demo_two")
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "import rewards; fn = rewards.resolve('demo_two');"
        "print(fn('please', {}).score, 'demo_two' in rewards.known_names())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1.0", "True"]


def test_entry_point_that_is_not_callable(tmp_path, monkeypatch):
    pkg = tmp_path / "bad_plugin_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("VALUE = 3\n")
    dist = tmp_path / "bad_plugin_pkg-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: bad_plugin_pkg\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[rl_reason.rewards]\nbad_plugin = bad_plugin_pkg:VALUE\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(UnknownCheckerError, match="bad_plugin"):
        resolve("bad_plugin")


def test_as_result():
    assert as_result(None) is None
    assert as_result(0.5) == RewardResult(0.5)
    assert as_result(2) == RewardResult(2.0)
    assert as_result(True) == RewardResult(1.0, correct=True)
    assert as_result(False) == RewardResult(0.0, correct=False)
    r = RewardResult(0.3, correct=None, info={"a": 1})
    assert as_result(r) is r
    with pytest.raises(TypeError, match="str"):
        as_result("1.0")


def test_rewards_imports_neither_torch_nor_rl_reason():
    code = (
        "import sys, rewards, rewards.runner, rewards.interop, rewards.format, rewards.shaping;"
        "rewards.resolve('boxed_format'); rewards.resolve('overlong_penalty');"
        "bad = [m for m in sys.modules if m == 'torch' or m.startswith('torch.') or m.startswith('rl_reason')];"
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_check_params_against_the_signature():
    import pytest

    from rewards import check_params, resolve

    check_params(resolve("regex"), {"pattern": "x", "mode": "fraction"})
    with pytest.raises(
        ValueError,
        match=r"unknown param 'patern' for checker 'regex' \(did you mean 'pattern'\?\); it takes: mode, pattern",
    ):
        check_params(resolve("regex"), {"patern": "x"}, "regex")
    # **params checkers: the params they read are declared
    check_params(resolve("math_answer"), {"numeric_only": True})
    with pytest.raises(ValueError, match="unknown param 'numeric'"):
        check_params(resolve("math_answer"), {"numeric": True})
    check_params(resolve("code_tests"), {"timeout_s": 3, "memory_mb": 512})
    with pytest.raises(ValueError, match="unknown param 'memory'"):
        check_params(resolve("code_tests"), {"memory": 512})

    def needs(completion, fields, *, threshold, scale=1.0):
        return 0.0

    with pytest.raises(ValueError, match="needs param 'threshold'"):
        check_params(needs, {"scale": 2.0})
    check_params(needs, {"threshold": 1})

    def open_ended(completion, fields, **kw):
        return 0.0

    check_params(open_ended, {"anything": 1})  # undeclared **kwargs: anything goes
    open_ended.accepted_params = ("a",)
    with pytest.raises(ValueError, match="unknown param 'b'"):
        check_params(open_ended, {"b": 1})
    with pytest.raises(ValueError, match="must take"):
        check_params(lambda completion: 0.0, {})


def test_import_errors_of_checker_modules_are_one_line(tmp_path, monkeypatch):
    import pytest

    from rewards import UnknownCheckerError, resolve

    (tmp_path / "syn_mod_x.py").write_text("def f(c, d):\n    return (\n")
    (tmp_path / "name_mod_x.py").write_text("x = 1\ny = nope\n")
    (tmp_path / "imp_mod_x.py").write_text("import not_installed_dep_x\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for path, needle in [
        ("syn_mod_x:f", "SyntaxError: "),
        ("name_mod_x:f", f"NameError: name 'nope' is not defined ({tmp_path / 'name_mod_x.py'}, line 2)"),
        ("imp_mod_x:f", "ModuleNotFoundError: No module named 'not_installed_dep_x' ("),
        ("not_there_x:f", "no module named 'not_there_x' on the module search path; set PYTHONPATH"),
    ]:
        with pytest.raises(UnknownCheckerError) as exc:
            resolve(path)
        assert needle in str(exc.value) and "\n" not in str(exc.value), str(exc.value)
    with pytest.raises(UnknownCheckerError, match=r"syn_mod_x.py, line 2\)"):
        resolve("syn_mod_x:f")


def test_code_tests_params_are_its_sandbox_limits():
    """code_tests takes **params: every sandbox limit it passes on is accepted (tmp_mb and the
    other per-run limits too), and a typo is refused with the nearest name."""
    import rewards
    from rewards.code import LIMIT_PARAMS

    fn = rewards.resolve("code_tests")
    rewards.check_params(fn, {k: 1 for k in LIMIT_PARAMS} | {"timeout_s": 3, "partial": True})
    with pytest.raises(ValueError, match=r"unknown param 'tmp_mbb'.*did you mean 'tmp_mb'"):
        rewards.check_params(fn, {"tmp_mbb": 8})
    math = rewards.resolve("math_answer")  # explicit keywords: no declaration needed
    rewards.check_params(math, {"numeric_only": False})
    with pytest.raises(ValueError, match="unknown param 'numeric'"):
        rewards.check_params(math, {"numeric": False})
