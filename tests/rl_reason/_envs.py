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


class RetryTests:
    """docs/ENVIRONMENTS.md's worked example, as printed there: run the task's tests on each
    attempt and show the failure until they pass or the tries are spent."""

    stop = ()  # a turn ends at EOS: step() sees each whole attempt

    def __init__(self, tries: int = 3, timeout_s: float = 5.0):
        from rewards import sandbox

        self.tries, self.limits = tries, sandbox.Limits(timeout_s=timeout_s)

    def reset(self, fields):
        self.tests, self.entry, self.attempt = fields["tests"], fields.get("entry_point"), 0
        return None  # the dataset's prompt

    def step(self, model_text):
        from rewards import sandbox
        from rewards.code import extract_code

        self.attempt += 1
        out = sandbox.run_tests(extract_code(model_text), self.tests, self.entry, self.limits)
        if out.passed or self.attempt >= self.tries:
            return Step(done=True, seconds=out.duration_s)
        why = (out.detail or out.stderr or out.status)[-400:]
        return Step(f"\nThe tests failed:\n{why}\nFix the code.\n", error=True, seconds=out.duration_s)


class Vowels(Letters):
    """Letters with four stop strings: the server engine (the OpenAI API) takes at most four."""

    stop = ("a", "e", "i", "o")
