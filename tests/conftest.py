import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("VNOTES_PROGRESS", "0")


# Files of a few tests that take half a minute to a minute each, queued first. xdist's --dist loadfile queues files
# by their number of tests, so these came last and ran one after another on one worker while the other sat idle:
# `make unit` took 220 s on the 2-core AVX2 EPYC (fp32 39 GFLOP/s), its last 5 % of tests about two minutes of that.
# With them first (and --no-loadscope-reorder in the Makefile) the many quick files fill in around them: 198 s.
SLOW_FILES_FIRST = (
    "test_full_dry.py",
    "test_colab_like.py",
    "test_determinism.py",
    "test_build_book.py",
    "test_distributed.py",
)


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(SLOW_FILES_FIRST)}
    items.sort(
        key=lambda item: rank.get(item.path.name, len(rank))
    )  # stable: the rest keep their order


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
