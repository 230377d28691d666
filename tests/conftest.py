import os

# The suite's runs show no progress display; recipes (recipes/test/ included) keep
# logging.progress on, so a user who copies one sees progress. Subprocesses inherit this.
os.environ.setdefault("RL_REASON_PROGRESS", "0")
