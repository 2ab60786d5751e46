"""CLIP: a dual encoder trained with the symmetric contrastive loss, and zero-shot classification (chapter 7a).

Radford et al. (2021), "Learning Transferable Visual Models From Natural Language Supervision".
An image encoder (a :class:`vnotes.transformer.ViT`) and a text encoder (a causal Transformer whose
[EOS] token summarises the caption) are projected linearly into one embedding space and
normalised; training pulls each image towards its own caption and away from the batch's other
captions. Classes become sentences ("a photo of a small red triangle"), so a trained model
classifies images into classes it never saw as labels -- *zero-shot*.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data import SHAPES, Vocabulary
from ..transformer import ViT
from .data import COLOUR_NAMES, normalize_pixels
from .metrics import retrieval_report
from .objectives import itc_loss
from .towers import ResNetTower, TextTransformer
from ..scales import dry_iter


# ----------------------------------------------------------------------------- configurations
# The paper's models (Radford et al., 2021, Tables 19 and 20), written once as data; the book's
# minis keep the layout (ViT image tower, causal text tower, linear projections) at toy sizes.
CLIP_CONFIGS: dict[str, dict] = {
    "ViT-B/32": dict(
        embed_dim=512,
        image_size=224,
        patch_size=32,
        vision_width=768,
        vision_layers=12,
        vision_heads=12,
        text_width=512,
        text_layers=12,
        text_heads=8,
        context_length=77,
    ),
    "ViT-B/16": dict(
        embed_dim=512,
        image_size=224,
        patch_size=16,
        vision_width=768,
        vision_layers=12,
        vision_heads=12,
        text_width=512,
        text_layers=12,
        text_heads=8,
        context_length=77,
    ),
    "ViT-L/14": dict(
        embed_dim=768,
        image_size=224,
        patch_size=14,
        vision_width=1024,
        vision_layers=24,
        vision_heads=16,
        text_width=768,
        text_layers=12,
        text_heads=12,
        context_length=77,
    ),
    "RN50": dict(
        embed_dim=1024,
        image_size=224,
        vision="resnet",
        vision_width=1024,
        vision_layers=(3, 4, 6, 3),
        vision_heads=32,
        text_width=512,
        text_layers=12,
        text_heads=8,
        context_length=77,
    ),
    "mini-rn": dict(
        embed_dim=64,
        image_size=32,
        vision="resnet",
        vision_width=64,
        vision_layers=(1, 1, 1),
        vision_heads=4,
        cnn_width=16,
        text_width=64,
        text_layers=2,
        text_heads=4,
        context_length=10,
    ),
    "mini": dict(
        embed_dim=64,
        image_size=32,
        patch_size=8,
        vision_width=64,
        vision_layers=2,
        vision_heads=4,
        text_width=64,
        text_layers=2,
        text_heads=4,
        context_length=10,
    ),
    "small": dict(
        embed_dim=128,
        image_size=32,
        patch_size=4,
        vision_width=128,
        vision_layers=4,
        vision_heads=4,
        text_width=128,
        text_layers=3,
        text_heads=4,
        context_length=10,
    ),
}


# ----------------------------------------------------------------------------- the dual encoder
class CLIP(nn.Module):
    """Contrastive Language--Image Pre-training (Radford et al., 2021): two towers, two projections, one temperature.

    ``encode_image`` and ``encode_text`` return L2-normalised embeddings; ``forward`` returns the
    ``[B, B]`` logits exp(t) * <v_i, w_j> of the symmetric contrastive loss.
    """

    def __init__(
        self,
        visual: ViT | ResNetTower,
        text: TextTransformer,
        embed_dim: int,
        init_temperature: float = 0.07,
        max_logit_scale: float = 100.0,
    ):
        super().__init__()
        self.visual, self.text = visual, text
        vision_width = (
            visual.cls_token.shape[-1]
            if isinstance(visual, ViT)
            else visual.width
        )
        text_width = text.token_embed.weight.shape[1]
        self.image_projection = nn.Linear(
            vision_width, embed_dim, bias=False
        )  # W_i
        self.text_projection = nn.Linear(
            text_width, embed_dim, bias=False
        )  # W_t
        # t = log(1 / tau), learned; exp(t) is clipped at 100 as in the paper
        self.logit_scale = nn.Parameter(
            torch.tensor(math.log(1.0 / init_temperature))
        )
        self.max_logit_scale = max_logit_scale
        nn.init.normal_(self.image_projection.weight, std=vision_width**-0.5)
        nn.init.normal_(self.text_projection.weight, std=text_width**-0.5)

    def scale(self) -> Tensor:
        """exp(t), the inverse temperature, clipped to at most ``max_logit_scale``."""
        return self.logit_scale.exp().clamp(max=self.max_logit_scale)

    def encode_image(self, images: Tensor) -> Tensor:
        # v = normalise(W_i f_img(x))   (the ViT's [CLS] or the ResNet's attention pool)   [B, E]
        x = normalize_pixels(images)
        feats = (
            self.visual.forward_features(x)[:, 0]
            if isinstance(self.visual, ViT)
            else self.visual(x)
        )
        return F.normalize(self.image_projection(feats), dim=-1)

    def encode_text(self, ids: Tensor) -> Tensor:
        # w = normalise(W_t f_txt([EOS]))                                 [B, E]
        return F.normalize(self.text_projection(self.text(ids)), dim=-1)

    def forward(self, images: Tensor, ids: Tensor) -> Tensor:
        """Logits ``[B, B]``: row i compares image i with every caption."""
        return (
            self.scale() * self.encode_image(images) @ self.encode_text(ids).T
        )


CLIP_SETTINGS = (
    "embed_dim",
    "image_size",
    "vision",
    "patch_size",
    "vision_width",
    "vision_layers",
    "vision_heads",
    "cnn_width",
    "text_width",
    "text_layers",
    "text_heads",
    "context_length",
)


def build_clip(
    name: str = "mini",
    *,
    vocab_size: int,
    eos_id: int,
    pad_id: int = 0,
    **overrides,
) -> CLIP:
    """A CLIP from :data:`CLIP_CONFIGS` (paper sizes or the book's minis), any field overridable."""
    if name not in CLIP_CONFIGS:
        raise ValueError(
            f"name={name!r} is unknown; allowed: {sorted(CLIP_CONFIGS)}"
        )
    unknown = set(overrides) - set(CLIP_SETTINGS)
    if unknown:
        raise ValueError(
            f"unknown CLIP settings {sorted(unknown)}; allowed: {CLIP_SETTINGS}"
        )
    cfg = {"vision": "vit", **CLIP_CONFIGS[name], **overrides}
    if cfg["vision"] == "vit":
        visual = ViT(
            image_size=cfg["image_size"],
            patch_size=cfg["patch_size"],
            num_classes=1,
            dim=cfg["vision_width"],
            depth=cfg["vision_layers"],
            num_heads=cfg["vision_heads"],
            mlp_ratio=4.0,
        )
        visual.head = nn.Identity()  # CLIP's image tower has no classifier
    elif cfg["vision"] == "resnet":
        from ..cnn import ResNet, resnet_mini  # chapter 3

        if cfg["image_size"] <= 64:  # CIFAR-style ResNet: stride 4
            cnn, grid = (
                resnet_mini(
                    num_classes=1,
                    width=cfg["cnn_width"],
                    blocks=cfg["vision_layers"],
                ),
                cfg["image_size"] // 4,
            )
        else:  # ImageNet-style bottleneck ResNet: stride 32
            cnn, grid = (
                ResNet("bottleneck", cfg["vision_layers"], num_classes=1),
                cfg["image_size"] // 32,
            )
        visual = ResNetTower(
            cnn, grid, cfg["vision_heads"], cfg["vision_width"]
        )
    else:
        raise ValueError(
            f"vision={cfg['vision']!r} is unknown; allowed: 'vit', 'resnet'"
        )
    text = TextTransformer(
        vocab_size,
        cfg["text_width"],
        cfg["text_layers"],
        cfg["text_heads"],
        cfg["context_length"],
        causal=True,
        pad_id=pad_id,
        eos_id=eos_id,
    )
    return CLIP(visual, text, cfg["embed_dim"])


def clip_step(
    model: CLIP, batch: tuple[Tensor, ...]
) -> tuple[Tensor, dict[str, Tensor]]:
    """One training step for :func:`vnotes.fit`: ``batch = (images, tokens, ...)`` -> ITC loss."""
    images, ids = batch[0], batch[1]
    loss = itc_loss(
        model.encode_image(images), model.encode_text(ids), model.scale()
    )
    return loss, {"temperature": 1.0 / model.scale().detach()}


def clip_step_duplicates_positive(
    model: CLIP, batch: tuple[Tensor, ...]
) -> tuple[Tensor, dict[str, Tensor]]:
    """:func:`clip_step` with identical captions in a batch counted as positives of each other's images
    (the ablation of page 7a): the same token sequence, word for word."""
    images, ids = batch[0], batch[1]
    same = (ids[:, None, :] == ids[None, :, :]).all(
        -1
    )  # [B, B], True on the diagonal
    loss = itc_loss(
        model.encode_image(images),
        model.encode_text(ids),
        model.scale(),
        positives=same,
    )
    return loss, {
        "temperature": 1.0 / model.scale().detach(),
        "duplicate_share": (same.sum(1) > 1).float().mean(),
    }


# ----------------------------------------------------------------------------- evaluation
@torch.no_grad()
def embed_all(
    model: CLIP,
    images: Tensor | None = None,
    ids: Tensor | None = None,
    batch_size: int = 512,
) -> tuple[Tensor | None, Tensor | None]:
    """Normalised embeddings of many images and/or captions, computed in chunks."""
    was = model.training
    model.eval()
    dev = next(model.parameters()).device
    img = (
        None
        if images is None
        else torch.cat(
            [
                model.encode_image(images[i : i + batch_size].to(dev))
                for i in range(0, len(images), batch_size)
            ]
        )
    )
    txt = (
        None
        if ids is None
        else torch.cat(
            [
                model.encode_text(ids[i : i + batch_size].to(dev))
                for i in range(0, len(ids), batch_size)
            ]
        )
    )
    model.train(was)
    return img, txt


def clip_retrieval_eval(model: CLIP, loader) -> dict[str, float]:
    """An ``eval_fn`` for :func:`vnotes.fit`: R@1 both ways over a loader of (images, tokens, caption_id)."""
    images, ids, caption_id = (
        torch.cat(parts) for parts in zip(*dry_iter(loader))
    )
    img, txt = embed_all(model, images, ids)
    report = retrieval_report(img @ txt.T, caption_id.to(img.device), ks=(1,))
    return {"i2t_r1": report["i2t_r1"], "t2i_r1": report["t2i_r1"]}


# zero-shot prompts: {colour} and {shape} are filled in with the class. The bare class name is a phrasing
# no caption ever had; the prompts below it are written the way captions are (with a size word).
BARE_TEMPLATE = "a {colour} {shape}"
ZERO_SHOT_TEMPLATES: tuple[str, ...] = (
    "a small {colour} {shape}",
    "a large {colour} {shape}",
    "a photo of a small {colour} {shape}",
    "a photo of a large {colour} {shape}",
    "a picture of a small {colour} {shape}",
    "a picture of a large {colour} {shape}",
)


def colour_shape_classes() -> list[tuple[str, str]]:
    """The 36 (colour, shape) classes, in the order of label colour * 6 + shape."""
    return [(c, s) for c in COLOUR_NAMES for s in SHAPES]


@torch.no_grad()
def zero_shot_weights(
    model: CLIP,
    vocab: Vocabulary,
    templates: Sequence[str] = ZERO_SHOT_TEMPLATES,
    classes: Sequence[tuple[str, str]] | None = None,
    max_len: int | None = None,
) -> Tensor:
    """One normalised text embedding per class, averaged over ``templates`` (prompt ensembling, Radford et al., 2021)."""
    if not templates:
        raise ValueError("give at least one template")
    classes = list(classes or colour_shape_classes())
    max_len = max_len or model.text.max_len
    per_template = []
    for t in templates:
        prompts = [t.format(colour=c, shape=s) for c, s in classes]
        ids = vocab.encode_batch(prompts, max_len, bos=True, eos=True)
        per_template.append(embed_all(model, ids=ids)[1])  # [C, E]
    # w_c = normalise(mean_t normalise(f(template_t(c))))
    return F.normalize(torch.stack(per_template).mean(0), dim=-1)


@torch.no_grad()
def zero_shot_predict(
    model: CLIP, images: Tensor, class_weights: Tensor
) -> Tensor:
    """Class index per image: argmax_c <v, w_c>."""
    img, _ = embed_all(model, images=images)
    return (img @ class_weights.to(img.device).T).argmax(1).cpu()
