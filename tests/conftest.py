import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("VNOTES_PROGRESS", "0")


@pytest.fixture(autouse=True)
def _few_threads():
    """Unit tests run two to a machine under xdist: one thread each avoids oversubscription."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
