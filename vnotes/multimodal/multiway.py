"""The Multiway Transformer of VLMo and BEiT-3: shared attention, one feed-forward expert per modality (7g).

Bao et al. (2022), "VLMo: Unified Vision-Language Pre-Training with Mixture-of-Modality-Experts";
Wang et al. (2023), "Image as a Foreign Language: BEiT Pretraining for All Vision and
Vision-Language Tasks" (BEiT-3 keeps the same backbone).

Every block has one multi-head self-attention shared by all tokens and a pool of feed-forward
*modality experts*: V-FFN for image tokens, L-FFN for text tokens and, in the top blocks, VL-FFN
for the fused sequence. A token is routed to an expert by its modality -- no learned gate. The
one network serves as a **dual encoder** (image alone through V-FFN, text alone through L-FFN:
fast retrieval, embeddings precomputed) and as a **fusion encoder** (image and text concatenated,
attending to each other; VL-FFN on top: image--text matching).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data import Vocabulary
from ..transformer import MLP, MultiHeadAttention, init_transformer_weights
from .albef import hard_negative_itm
from .objectives import contrastive_loss, mlm_inputs
from .towers import frozen_tokens
from .vilt import MLMHead

EXPERTS: tuple[str, ...] = ("vision", "language", "vl")

# how notebook 7h trains the mini at each scale
VLMO_TRAINING: dict[str, dict] = {
    "smoke": dict(n_train=128, epochs=1, batch_size=32, lr=2e-3),
    "default": dict(n_train=6400, epochs=4, batch_size=64, lr=2e-3),
    "full": dict(n_train=50000, epochs=20, batch_size=128, lr=5e-4),
}

# VLMo-Base (Bao et al., 2022, Sec. 3): 12 blocks of width 768, VL-FFN in the top 2; and the book's mini
VLMO_CONFIGS: dict[str, dict] = {
    "VLMo-Base": dict(
        dim=768,
        depth=12,
        fusion_depth=2,
        num_heads=12,
        max_len=40,
        image_pool=1,
    ),
    "mini": dict(
        dim=64, depth=3, fusion_depth=1, num_heads=4, max_len=10, image_pool=2
    ),
}


class MultiwayBlock(nn.Module):
    """x + MSA(LN(x)) with one shared attention, then x + FFN_e(LN(x)) with expert e chosen by each token's modality."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        with_vl_expert: bool,
        mlp_ratio: float = 4.0,
    ):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = MultiHeadAttention(
            dim, num_heads
        )  # shared by every modality
        names = EXPERTS if with_vl_expert else EXPERTS[:2]
        self.norm2 = nn.ModuleDict({e: nn.LayerNorm(dim) for e in names})
        self.experts = nn.ModuleDict(
            {e: MLP(dim, int(dim * mlp_ratio)) for e in names}
        )

    def forward(
        self,
        x: Tensor,
        num_image_tokens: int,
        mode: str,
        padding: Tensor | None = None,
        need_weights: bool = False,
    ) -> Tensor:
        """``mode``: ``vision`` or ``language`` (one modality), or ``fusion`` (``[image; text]``)."""
        x = x + self.attn(
            self.norm1(x), key_padding_mask=padding, need_weights=need_weights
        )
        if mode in ("vision", "language"):
            route = [(mode, slice(None))]
        elif mode == "fusion" and "vl" in self.experts:
            route = [("vl", slice(None))]
        elif (
            mode == "fusion"
        ):  # bottom blocks: each token to its own modality's expert
            route = [
                ("vision", slice(0, num_image_tokens)),
                ("language", slice(num_image_tokens, None)),
            ]
        else:
            raise ValueError(
                f"mode={mode!r} is unknown; allowed: 'vision', 'language', 'fusion'"
            )
        parts = [
            x[:, sl] + self.experts[e](self.norm2[e](x[:, sl]))
            for e, sl in route
        ]
        return torch.cat(parts, 1)


class VLMo(nn.Module):
    """A Multiway Transformer pre-trained with ITC (dual-encoder mode), ITM with hard negatives and MLM
    (fusion mode), as in VLMo (Bao et al., 2022). Image tokens come from a frozen pretrained tower."""

    def __init__(
        self,
        vocab: Vocabulary,
        visual: nn.Module,
        image_dim: int,
        dim: int = 64,
        depth: int = 3,
        fusion_depth: int = 1,
        num_heads: int = 4,
        max_len: int = 10,
        image_pool: int = 2,
        seed: int = 0,
    ):
        super().__init__()
        if not 0 <= fusion_depth <= depth:
            raise ValueError(
                f"fusion_depth={fusion_depth} must lie in 0..depth={depth}"
            )
        self.vocab, self.image_pool = vocab, image_pool
        self.visual = visual
        for p in (
            self.visual.parameters()
        ):  # VLMo's image-only stage is played by the frozen CLIP tower
            p.requires_grad_(False)
        self.image_in = nn.Linear(image_dim, dim)
        self.token_embed = nn.Embedding(len(vocab), dim)
        self.text_pos = nn.Parameter(torch.zeros(1, max_len, dim))
        self.type_embed = nn.Embedding(2, dim)  # image 0, text 1
        self.text_embed_norm = nn.LayerNorm(dim)  # BERT's embedding LayerNorm
        self.image_embed_norm = nn.LayerNorm(dim)
        self.blocks = nn.ModuleList(
            MultiwayBlock(
                dim, num_heads, with_vl_expert=i >= depth - fusion_depth
            )
            for i in range(depth)
        )
        self.norm = nn.LayerNorm(dim)
        self.image_proj, self.text_proj = (
            nn.Linear(dim, dim),
            nn.Linear(dim, dim),
        )
        self.temp = nn.Parameter(torch.tensor(0.07))
        self.itm_head = nn.Linear(dim, 2)
        self.mlm_head = MLMHead(dim, len(vocab))
        for (
            name,
            child,
        ) in (
            self.named_children()
        ):  # never re-initialise the pretrained image tower
            if name != "visual":
                child.apply(init_transformer_weights)
        nn.init.normal_(self.token_embed.weight, std=0.02)
        nn.init.normal_(self.text_pos, std=0.02)
        self.generator = torch.Generator().manual_seed(seed)

    def train(self, mode: bool = True) -> "VLMo":
        super().train(mode)
        self.visual.eval()
        return self

    def frozen_image_tokens(self, images: Tensor) -> Tensor:
        """The frozen tower's pooled token and its feature map average-pooled ``image_pool`` x ``image_pool``
        ``[B, 1 + N / pool^2, image_dim]``; tokens it gave earlier (:func:`~vnotes.multimodal.towers.frozen_features`
        of this method) pass through unchanged."""
        if images.ndim == 3:
            return images  # pooled already
        tokens = frozen_tokens(
            self.visual, images
        )  # [B, 1 + N, image_dim], no graph
        if self.image_pool > 1:
            B, N, D = tokens.shape
            g = int(round((N - 1) ** 0.5))
            grid = tokens[:, 1:].transpose(1, 2).reshape(B, D, g, g)
            pooled = (
                F.avg_pool2d(grid, self.image_pool).flatten(2).transpose(1, 2)
            )  # [B, N / pool^2, D]
            tokens = torch.cat([tokens[:, :1], pooled], 1)
        return tokens

    def embed_image(self, images: Tensor) -> Tensor:
        """Image tokens for the shared blocks: the frozen tower's tokens, projected and normalised (trained)."""
        return (
            self.image_embed_norm(
                self.image_in(self.frozen_image_tokens(images))
            )
            + self.type_embed.weight[0]
        )

    def embed_text(self, ids: Tensor) -> Tensor:
        return (
            self.text_embed_norm(
                self.token_embed(ids) + self.text_pos[:, : ids.shape[1]]
            )
            + self.type_embed.weight[1]
        )

    def _run(
        self,
        x: Tensor,
        num_image: int,
        mode: str,
        padding: Tensor | None,
        need_weights: bool = False,
    ) -> Tensor:
        for block in self.blocks:
            x = block(x, num_image, mode, padding, need_weights)
        return self.norm(x)

    # ---- dual encoder
    def encode_image(self, images: Tensor) -> Tensor:
        """Image alone through attention + V-FFN: normalised [CLS] embedding ``[B, dim]``."""
        x = self.embed_image(images)
        return F.normalize(
            self.image_proj(self._run(x, x.shape[1], "vision", None)[:, 0]),
            dim=-1,
        )

    def encode_text(self, ids: Tensor) -> Tensor:
        """Text alone through attention + L-FFN: normalised first-token embedding ``[B, dim]``."""
        h = self._run(
            self.embed_text(ids), 0, "language", ids == self.vocab.pad
        )
        return F.normalize(self.text_proj(h[:, 0]), dim=-1)

    def similarity(self, images: Tensor, ids: Tensor) -> Tensor:
        return self.encode_image(images) @ self.encode_text(ids).T

    # ---- fusion encoder
    def fuse(
        self,
        images: Tensor | None,
        ids: Tensor,
        image_embeds: Tensor | None = None,
        need_weights: bool = False,
    ) -> Tensor:
        """``[image; text]`` through shared attention, V/L-FFN below and VL-FFN on top -> ``[B, N + L, dim]``."""
        img = (
            self.embed_image(images) if image_embeds is None else image_embeds
        )
        B, N = img.shape[:2]
        padding = torch.cat(
            [
                torch.zeros(B, N, dtype=torch.bool, device=ids.device),
                ids == self.vocab.pad,
            ],
            1,
        )
        return self._run(
            torch.cat([img, self.embed_text(ids)], 1),
            N,
            "fusion",
            padding,
            need_weights,
        )

    def itm_logits(self, images: Tensor, ids: Tensor) -> Tensor:
        """``[B, 2]`` from the fused text [CLS] (the first text token)."""
        img = self.embed_image(images)
        return self.itm_head(self.fuse(None, ids, img)[:, img.shape[1]])

    def mlm_logits(self, images: Tensor, ids: Tensor) -> Tensor:
        img = self.embed_image(images)
        return self.mlm_head(self.fuse(None, ids, img)[:, img.shape[1] :])

    def forward(
        self, images: Tensor, ids: Tensor, text_id: Tensor
    ) -> tuple[Tensor, dict[str, Tensor]]:
        with torch.no_grad():
            self.temp.clamp_(0.001, 0.5)
        img = self.embed_image(images)
        B, N = img.shape[:2]
        img_feat = F.normalize(
            self.image_proj(self._run(img, N, "vision", None)[:, 0]), dim=-1
        )
        txt_feat = self.encode_text(ids)
        sim = img_feat @ txt_feat.T / self.temp
        same = (text_id[:, None] == text_id[None]).float()
        targets = same / same.sum(1, keepdim=True)
        loss_itc = contrastive_loss(sim, sim.T, targets, targets)
        img_idx, txt_idx, labels = hard_negative_itm(
            sim.detach(), sim.T.detach(), text_id, self.generator
        )
        fused = self.fuse(None, ids[txt_idx], img[img_idx])
        itm_logits = self.itm_head(fused[:, N])
        loss_itm = F.cross_entropy(itm_logits, labels)
        masked, mlm_labels = mlm_inputs(ids, self.vocab, 0.15, self.generator)
        logits = self.mlm_head(self.fuse(None, masked, img)[:, N:])
        chosen = mlm_labels != -100
        loss_mlm = (
            F.cross_entropy(logits[chosen], mlm_labels[chosen])
            if chosen.any()
            else logits.sum() * 0
        )
        loss = loss_itc + loss_itm + loss_mlm
        return loss, {
            "itc": loss_itc.detach(),
            "itm": loss_itm.detach(),
            "mlm": loss_mlm.detach(),
        }


def build_vlmo(
    vocab: Vocabulary,
    visual: nn.Module,
    image_dim: int,
    name: str = "mini",
    **overrides,
) -> VLMo:
    """A VLMo from :data:`VLMO_CONFIGS` on top of a frozen image tower with ``image_dim``-wide tokens."""
    if name not in VLMO_CONFIGS:
        raise ValueError(
            f"name={name!r} is unknown; allowed: {sorted(VLMO_CONFIGS)}"
        )
    unknown = set(overrides) - set(VLMO_CONFIGS["mini"])
    if unknown:
        raise ValueError(
            f"unknown VLMo settings {sorted(unknown)}; allowed: {sorted(VLMO_CONFIGS['mini'])}"
        )
    return VLMo(
        vocab,
        copy.deepcopy(visual),
        image_dim,
        **{**VLMO_CONFIGS[name], **overrides},
    )


def vlmo_step(
    model: VLMo, batch: tuple[Tensor, ...]
) -> tuple[Tensor, dict[str, Tensor]]:
    """A :func:`vnotes.fit` step: ``batch = (images or their frozen tokens, tokens, text_id)``."""
    return model(batch[0], batch[1], batch[2])
