"""A user environment in a test module (named ``tests.rl_reason._envs:Letters`` in recipes).

The tiny random model emits bytes at random, so an environment that pauses on any lowercase
letter is one it really triggers: every letter it writes ends a turn, and the environment
answers with a short tool turn naming the letter.
"""

import string

from rl_reason.envs import Step


class Letters:
    stop = tuple(string.ascii_lowercase)

    def __init__(self, done_after: int = 0):
        self.done_after = done_after
        self.seen = 0

    def reset(self, fields):
        self.seen = 0
        return None

    def step(self, model_text):
        if not model_text or model_text[-1] not in string.ascii_lowercase:
            return Step()
        self.seen += 1
        done = bool(self.done_after) and self.seen >= self.done_after
        return Step(f" <{model_text[-1]}:{self.seen}> ", done=done, seconds=0.001)


class Broken:
    """An environment whose step raises: the rollout gets an error observation."""

    stop = tuple(string.ascii_lowercase)

    def reset(self, fields):
        return None

    def step(self, model_text):
        raise RuntimeError("boom")
