"""Checkpoints written atomically and loaded safely, plus a local cache of trained models.

A chapter that needs a model trained in an earlier chapter trains it itself at the scale's
size, or takes it from this cache when an earlier run left it there. The cache key includes
the scale, every setting, a digest of the whole ``vnotes`` source and the torch version, and
training is seeded, so the result does not depend on which of the two happened, and changed
code is never served a model trained by the old one. Nothing is ever downloaded.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

CACHE_ENV = "VNOTES_CACHE_DIR"


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Save ``state`` to ``path`` atomically: a crash mid-write leaves the previous file intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def load_checkpoint(
    path: str | os.PathLike, map_location: str | torch.device = "cpu"
) -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` (tensors and plain containers only, no pickled code)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    return torch.load(path, map_location=map_location, weights_only=True)


def cache_dir() -> Path:
    """``$VNOTES_CACHE_DIR`` or ``data/cache`` of the checkout (or ``./vnotes_cache`` outside one).

    In a dry run (:func:`vnotes.scales.dry_run_steps`) a private temporary folder of this process, so a
    model trained on truncated loops is never reused by a real run.
    """
    from .scales import dry_run_steps

    if dry_run_steps() is not None:
        import tempfile

        return Path(tempfile.gettempdir()) / f"vnotes-dry-cache-{os.getpid()}"
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env)
    here = Path.cwd().resolve()
    for p in (here, *here.parents):
        if (p / "_config.yml").exists() and (p / "vnotes").is_dir():
            return p / "data" / "cache"
    return Path("vnotes_cache")


def cache_path(key: str) -> Path:
    """Where the model cached under ``key`` lives: ``<cache_dir()>/<key>.pt``."""
    return cache_dir() / f"{key}.pt"


PACKAGE_DIR = Path(__file__).resolve().parent


# Packages no model imports (tests/test_core.py checks): the readers' exercises and their solutions. Editing
# them must not retrain the book's shared models; a page that shows them is re-executed all the same (the
# book build's key covers the whole package).
MODEL_FREE = ("exercises", "exercise_solutions")


def code_digest(
    package_dir: str | os.PathLike | None = None,
    *,
    skip: tuple[str, ...] = MODEL_FREE,
) -> str:
    """sha256 over every ``.py`` file of the package (paths and contents) outside the subpackages ``skip``.

    It changes whenever code a model could depend on does; ``skip=()`` covers the whole package.
    """
    root = Path(package_dir if package_dir is not None else PACKAGE_DIR)
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root)
        if relative.parts[0] in skip:
            continue
        h.update(relative.as_posix().encode() + b"\0")
        h.update(path.read_bytes())
    return h.hexdigest()


def cache_key(name: str, **settings: Any) -> str:
    """A file name for a trained model: its name plus a hash of every setting that shaped it.

    The hash also covers :func:`code_digest` (the definition and training code of every model
    lives in this package) and the torch version, so a model is never reused across code changes.
    """
    blob = json.dumps(
        {
            "settings": settings,
            "code": code_digest(),
            "torch": torch.__version__,
        },
        sort_keys=True,
        default=str,
    )
    return f"{name}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"


def cached_model(
    model: nn.Module,
    key: str,
    train: Callable[[nn.Module], Any],
    *,
    use_cache: bool = True,
) -> nn.Module:
    """Load ``model``'s weights from the cache under ``key``, or call ``train(model)`` and store them.

    Returns the model; ``model.loaded_from_cache`` says which happened.
    """
    path = cache_path(key)
    if use_cache and path.is_file():
        model.load_state_dict(load_checkpoint(path)["model"])
        model.loaded_from_cache = True
        return model
    train(model)
    save_checkpoint(path, {"model": model.state_dict()})
    model.loaded_from_cache = False
    return model
