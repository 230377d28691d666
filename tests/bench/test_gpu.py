"""bench/gpu.py: the CPU path of the GPU bench runs (so it never rots), and on a GPU the bench
itself with the tiny size."""

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TINY = [
    "--size",
    "tiny",
    "--steps",
    "2",
    "--prompts",
    "2",
    "--gens",
    "2",
    "--new-tokens",
    "4",
    "--prompt-words",
    "6",
]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_gpu", ROOT / "bench" / "gpu.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _check_output(out: str, device: str) -> None:
    runs = [ln for ln in out.splitlines() if ln.startswith("run=")]
    assert [r.split()[0] for r in runs] == ["run=ours", "run=trl"], out
    for r in runs:
        fields = dict(kv.split("=", 1) for kv in r.split() if "=" in kv)
        assert float(fields["s_per_step"]) > 0 and float(fields["gen_tok_per_s"]) > 0
        assert float(fields["generate_s"]) > 0 and float(fields["update_s"]) > 0
    last = out.strip().splitlines()[-1]
    assert last.startswith("gpu: card=") and (device != "cpu" or "card=cpu" in last)
    assert re.search(r"tiny ratio=\d+\.\d+ mem_ratio=\d+\.\d+ tok_ratio=\d+\.\d+", last), last


def test_cpu_tiny_runs_ours_and_trl_and_prints_the_ratios(capsys):
    bench = _bench()
    assert bench.main(["--device", "cpu", *TINY, "--in-process"]) == 0
    _check_output(capsys.readouterr().out, "cpu")


def test_sizes_are_real_shapes_and_moe_is_guarded():
    bench = _bench()
    assert bench.SIZES["7b"]["hidden_size"] == 3584 and bench.SIZES["1.5b"]["num_hidden_layers"] == 28
    assert bench.available("tiny")
    from transformers import CONFIG_MAPPING

    assert bench.available("moe") == ("qwen3_moe" in CONFIG_MAPPING)


@pytest.mark.gpu
def test_gpu_tiny_bench_runs_on_cuda():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu.py"), "--device", "cuda", *TINY],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    _check_output(out.stdout, "cuda")
