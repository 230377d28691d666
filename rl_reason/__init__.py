"""rl-reason: RL fine-tuning of LoRA adapters for verifiable reasoning."""

__version__ = "0.1.0"
