"""The chapter's pretrained CLIP: trained in 7a, reused (from the local cache) by every later notebook.

Every model of this chapter starts, as in its paper, from a pretrained image encoder: ViLT and
ALBEF from an ImageNet ViT, BLIP-2 from EVA-CLIP, LLaVA from CLIP. Our stand-in is the CLIP of
notebook 7a, trained on the seen colour--shape combinations only. A notebook that needs it and
finds no cached copy trains it itself, with the same seed and settings, so the result is the same
either way (see :func:`vnotes.checkpoint.cached_model`). Nothing is downloaded.
"""
from __future__ import annotations

import torch

from ..checkpoint import cache_key, cached_model
from ..data import TensorLoader, Vocabulary
from ..runtime import seed_everything
from ..scales import resolve_scale
from ..train import History, fit
from .clip import CLIP, build_clip, clip_retrieval_eval, clip_step
from .data import CAPTION_TEMPLATES, ImageTextPairs, caption_vocabulary, make_pairs

# how the chapter's CLIP is trained at each scale (written once; 7a shows this table)
CLIP_TRAINING: dict[str, dict] = {
    "smoke": dict(config="mini-rn", n_train=512, epochs=2, batch_size=64, lr=3e-3, weight_decay=0.05),
    "default": dict(config="mini-rn", n_train=8000, epochs=10, batch_size=64, lr=3e-3, weight_decay=0.05),
    "full": dict(config="mini-rn", n_train=50000, epochs=30, batch_size=256, lr=2e-3, weight_decay=0.05,
                 overrides=dict(cnn_width=16, embed_dim=128, text_width=128, vision_width=128)),
}


def clip_settings(scale: str) -> dict:
    """The training settings of the chapter's CLIP at ``scale``."""
    scale = resolve_scale(scale)
    return dict(CLIP_TRAINING[scale])


def new_clip(scale: str, vocab: Vocabulary | None = None, seed: int = 0) -> CLIP:
    """An untrained CLIP of the size :data:`CLIP_TRAINING` gives for ``scale``."""
    vocab = vocab or caption_vocabulary()
    cfg = clip_settings(scale)
    seed_everything(seed)
    return build_clip(cfg["config"], vocab_size=len(vocab), eos_id=vocab.eos, pad_id=vocab.pad,
                      **cfg.get("overrides", {}))


def train_clip(model: CLIP, scale: str, seed: int = 0, val_pairs: ImageTextPairs | None = None,
               progress: bool | None = None) -> History:
    """Train ``model`` on seen-combination pairs with the settings of ``scale`` (AdamW, one-cycle schedule).

    With ``val_pairs``, retrieval recall on them is logged after every epoch.
    """
    cfg = clip_settings(scale)
    seed_everything(seed)
    pairs = make_pairs(cfg["n_train"], seed=seed, templates=CAPTION_TEMPLATES)
    loader = TensorLoader(pairs.images, pairs.tokens, batch_size=cfg["batch_size"], shuffle=True, drop_last=True,
                          seed=seed)
    val_loader = None if val_pairs is None else TensorLoader(val_pairs.images, val_pairs.clean_tokens,
                                                             val_pairs.caption_id, batch_size=512)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg["lr"], total_steps=cfg["epochs"] * len(loader),
                                                pct_start=0.1)
    return fit(model, loader, optimizer=opt, epochs=cfg["epochs"], step_fn=clip_step, scheduler=sched,
               val_loader=val_loader, eval_fn=clip_retrieval_eval if val_loader is not None else None,
               precision="auto", progress=progress, desc="CLIP")


def clip_cache_key(scale: str, seed: int = 0) -> str:
    """The cache file name of the chapter's CLIP at ``scale`` (a hash of every setting)."""
    return cache_key("07_clip", scale=resolve_scale(scale), seed=seed, vocab=caption_vocabulary().itos,
                     **clip_settings(scale))


def chapter_clip(scale: str, seed: int = 0, use_cache: bool = True) -> CLIP:
    """The chapter's trained CLIP at ``scale``: from the local cache if 7a (or anyone) left it, else trained now."""
    model = new_clip(scale, seed=seed)
    model = cached_model(model, clip_cache_key(scale, seed), lambda m: train_clip(m, scale, seed, progress=False),
                         use_cache=use_cache)
    return model.eval()
