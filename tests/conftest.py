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


@pytest.fixture(scope="session")
def browser():
    """One headless chromium for the whole test process (one per xdist worker), shared by the page tests
    (tests/browsing.py says why it must be one); started only when a test asks for it."""
    from browsing import launched

    try:
        with launched() as started:
            yield started
    except RuntimeError as missing:
        pytest.fail(str(missing))
