"""Real image data sets through torchvision, for readers who are online.

Nothing here downloads unless asked (``download=True``). Files are fetched into a temporary
folder and moved into place only after torchvision has verified their checksums, so a failed
or interrupted download never leaves files that look valid. Offline, a clear error says
what to do instead. There is never a silent substitute: only a dry run (``VNOTES_DRY_RUN``, which
checks that a configuration runs and whose numbers are never read) gets random images of the right
shape in place of a missing set, and says so.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import torch

DATASETS = {
    # name: (torchvision class name, folder torchvision creates under root)
    "mnist": ("MNIST", "MNIST"),
    "fashion_mnist": ("FashionMNIST", "FashionMNIST"),
    "cifar10": ("CIFAR10", "cifar-10-batches-py"),
}
# shapes of the real sets: (train size, test size, channels, height, width, classes), for dry runs
SHAPES = {
    "mnist": (60_000, 10_000, 1, 28, 28, 10),
    "fashion_mnist": (60_000, 10_000, 1, 28, 28, 10),
    "cifar10": (50_000, 10_000, 3, 32, 32, 10),
}


class DatasetUnavailableError(RuntimeError):
    """The data set is neither on disk nor downloadable here."""


def default_root() -> Path:
    """``data/`` of the checkout (where the README says real data sets live), else ``./data``."""
    here = Path.cwd().resolve()
    for p in (here, *here.parents):
        if (p / "_config.yml").exists() and (p / "vnotes").is_dir():
            return p / "data"
    return Path("data")


def load_real(name: str, split: str = "train", *, root: str | Path | None = None,
              download: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Images ``[N, C, H, W]`` in [0, 1] and labels ``[N]`` of MNIST, Fashion-MNIST or CIFAR-10."""
    if name not in DATASETS:
        raise ValueError(f"dataset={name!r} is unknown; allowed: {sorted(DATASETS)}")
    if split not in ("train", "test"):
        raise ValueError(f"split={split!r} is unknown for {name}; allowed: 'train', 'test'")
    import torchvision

    cls_name, folder = DATASETS[name]
    cls = getattr(torchvision.datasets, cls_name)
    root = Path(root) if root is not None else default_root()
    try:
        ds = cls(str(root), train=(split == "train"), download=False)
    except RuntimeError:
        from ..scales import dry_run_steps

        if dry_run_steps() is not None:  # said aloud, and only where results are never read
            n_train, n_test, c, h, w, k = SHAPES[name]
            n = n_train if split == "train" else n_test
            print(f"dry run: {name} is not under {root}/{folder}; {n} random images of its shape stand "
                  "in (a dry run checks that the full configuration runs, not what it learns)")
            g = torch.Generator().manual_seed(0)
            return torch.rand(n, c, h, w, generator=g), torch.randint(0, k, (n,), generator=g)
        if not download:
            raise DatasetUnavailableError(
                f"{name} is not under {root}/{folder}. Call load_real({name!r}, download=True) on a machine "
                f"with internet access (or copy the torchvision files to {root}/{folder}); offline, use the "
                f"built-in data instead: vnotes.data.make_scenes or vnotes.data.load_digits.") from None
        _download(cls, root, folder, name)
        ds = cls(str(root), train=(split == "train"), download=False)
    data = ds.data
    images = torch.as_tensor(data if not hasattr(data, "numpy") else data.numpy())
    images = images.float().div(255)
    images = images.unsqueeze(1) if images.ndim == 3 else images.permute(0, 3, 1, 2)
    labels = torch.as_tensor(ds.targets, dtype=torch.long)
    return images.contiguous(), labels


def _download(cls, root: Path, folder: str, name: str) -> None:
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix=f".{name}.tmp") as tmp:
        try:
            cls(tmp, train=True, download=True)
            cls(tmp, train=False, download=True)
        except Exception as err:  # network errors come in many types
            raise DatasetUnavailableError(
                f"downloading {name} failed ({type(err).__name__}: {err}); nothing was kept. "
                f"Check the internet connection, or use vnotes.data.make_scenes / load_digits offline.") from err
        target = root / folder
        if target.exists():
            shutil.rmtree(target)
        shutil.move(str(Path(tmp) / folder), str(target))
