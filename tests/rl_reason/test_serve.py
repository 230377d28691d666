"""rl_reason.serve: the vLLM server command for a recipe (printed; no vLLM needed here)."""

from __future__ import annotations

from rl_reason import serve
from rl_reason.config import load_config


def test_serve_command_enables_runtime_lora_and_processed_logprobs():
    argv, env = serve.serve_command("/models/m", 16, "bfloat16", port=8123, executable=["vllm", "serve"])
    assert argv[:3] == ["vllm", "serve", "/models/m"]
    assert argv[argv.index("--port") + 1] == "8123" and argv[argv.index("--dtype") + 1] == "bfloat16"
    assert argv[argv.index("--logprobs-mode") + 1] == "processed_logprobs"
    assert argv[argv.index("--max-lora-rank") + 1] == "16" and "--enforce-eager" in argv  # no GPU
    assert env == {serve.RUNTIME_LORA_ENV: "True"}


def test_the_api_server_module_takes_model_as_a_flag_and_gpu_options_apply_on_gpu():
    exe = ["/py", "-m", "vllm.entrypoints.openai.api_server"]
    argv, env = serve.serve_command(
        "/m", 8, "float16", gpu=True, enforce_eager=False, max_model_len=2048,
        gpu_memory_utilization=0.4, enable_lora=False, executable=exe,
    )  # fmt: skip
    assert argv[:5] == exe + ["--model", "/m"] and env == {}
    assert "--enforce-eager" not in argv and "--enable-lora" not in argv
    assert argv[argv.index("--max-model-len") + 1] == "2048"
    assert argv[argv.index("--gpu-memory-utilization") + 1] == "0.4"


def test_command_for_recipe_and_the_shell_line(monkeypatch):
    monkeypatch.setattr(serve, "vllm_executable", lambda: ["vllm", "serve"])
    cfg = load_config(None, ["model.name=/some/dir", "model.device=cpu", "lora.r=4"])
    argv, env = serve.command_for_recipe(cfg, "0.0.0.0", 9000)
    assert argv[2] == "/some/dir" and argv[argv.index("--host") + 1] == "0.0.0.0"
    line = serve.shell_line(argv, env)
    assert line.startswith("VLLM_ALLOW_RUNTIME_LORA_UPDATING=True vllm serve /some/dir ")
    assert serve.shell_line(["a b"], {}) == "'a b'"
