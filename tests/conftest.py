"""Settings shared by every test module."""

import os

import torch

# Under pytest-xdist (`make unit` runs one worker per core), each worker keeps to one PyTorch
# thread, as the notebooks do: two workers with two threads each would wait on each other.
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)
