"""Masked autoencoders (He et al., 2021): hide most patches, encode the rest, reconstruct the pixels (chapter 5, mask / 冗余信息).

Images are redundant: a few patches say much about the rest. MAE masks a large random subset
(75%) of the patches, runs the encoder -- the chapter-4 :class:`~vnotes.transformer.ViT` -- on
the *visible* patches only (so pre-training costs a quarter of a full pass), then a small
decoder gets the encoded patches plus a shared, learned mask token at every hidden position and
predicts the hidden patches' pixels. The loss counts the masked patches only.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..transformer import TransformerBlock, ViT
from .augment import ViewAugment


def sincos_position_embedding(
    dim: int, grid: tuple[int, int], cls_token: bool = True
) -> Tensor:
    """Fixed 2-D sine-cosine positions ``[1, (1 +) gh*gw, dim]``: half the channels encode the row, half the column.

    For one axis with position p and d channels: (sin(p w_i), cos(p w_i)), w_i = 1 / 10000^(2i/d)
    (Vaswani et al., 2017); MAE uses them in encoder and decoder. The [CLS] position is all zeros.
    """
    if dim % 4:
        raise ValueError(
            f"dim={dim} must be a multiple of 4 (sin and cos for each of two axes)"
        )
    quarter = dim // 4
    omega = 1.0 / 10000 ** (
        torch.arange(quarter, dtype=torch.float64) / quarter
    )  # [dim/4]
    rows, cols = torch.meshgrid(
        torch.arange(grid[0], dtype=torch.float64),
        torch.arange(grid[1], dtype=torch.float64),
        indexing="ij",
    )

    def axis(pos: Tensor) -> Tensor:
        angle = pos.reshape(-1, 1) * omega[None]  # [N, dim/4]
        return torch.cat([angle.sin(), angle.cos()], dim=1)  # [N, dim/2]

    table = torch.cat([axis(rows), axis(cols)], dim=1).float()  # [N, dim]
    if cls_token:
        table = torch.cat([torch.zeros(1, dim), table], dim=0)
    return table[None]


def xavier_init(module: nn.Module) -> None:
    """Xavier-uniform linear weights and zero biases: MAE's initialisation of its Transformer (He et al., 2021, App. A.1).

    Chapter 4's ViT starts from std-0.02 weights instead; the book measures both on the validation split.
    """
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def patchify(images: Tensor, patch_size: int) -> Tensor:
    """``[B, C, H, W]`` -> ``[B, N, P*P*C]``, patches in the order of the ViT's patch embedding (rows, then columns)."""
    B, C, H, W = images.shape
    P = patch_size
    if H % P or W % P:
        raise ValueError(
            f"patch_size={P} does not divide the image size {H}x{W}"
        )
    # "b c (h p) (w q) -> b (h w) (p q c)"
    return (
        images.reshape(B, C, H // P, P, W // P, P)
        .permute(0, 2, 4, 3, 5, 1)
        .reshape(B, (H // P) * (W // P), P * P * C)
    )


def unpatchify(patches: Tensor, patch_size: int, channels: int = 3) -> Tensor:
    """The inverse of :func:`patchify` for square images: ``[B, N, P*P*C]`` -> ``[B, C, H, W]``."""
    B, N, _ = patches.shape
    side = int(math.isqrt(N))
    if side * side != N:
        raise ValueError(f"{N} patches do not form a square grid")
    P = patch_size
    x = patches.reshape(B, side, side, P, P, channels).permute(
        0, 5, 1, 3, 2, 4
    )
    return x.reshape(B, channels, side * P, side * P)


def random_masking(
    tokens: Tensor, mask_ratio: float, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Keep a random ``1 - mask_ratio`` of each sample's tokens (He et al., 2021, Sec. 3: shuffle, keep the first part).

    Returns the visible tokens ``[B, N_keep, D]``, the mask ``[B, N]`` (1 = hidden) and the indices
    that undo the shuffle ``[B, N]``.
    """
    if not 0.0 <= mask_ratio < 1.0:
        raise ValueError(
            f"mask_ratio={mask_ratio} must lie in [0, 1): at least one patch must stay visible"
        )
    B, N, D = tokens.shape
    keep = max(1, int(round(N * (1 - mask_ratio))))
    noise = torch.rand(
        B, N, device=tokens.device, generator=generator
    )  # one random key per patch
    ids_shuffle = noise.argsort(dim=1)  # ascending: the first are kept
    ids_restore = ids_shuffle.argsort(dim=1)
    ids_keep = ids_shuffle[:, :keep]
    visible = tokens.gather(
        1, ids_keep[..., None].expand(B, keep, D)
    )  # [B, N_keep, D]
    mask = torch.ones(B, N, device=tokens.device)
    mask[:, :keep] = 0
    mask = mask.gather(1, ids_restore)  # back to patch order
    return visible, mask, ids_restore


class MAE(nn.Module):
    """Masked autoencoder (He et al., 2021) around a :class:`~vnotes.transformer.ViT` encoder.

    Encoder: the ViT's patch embedding, fixed sine-cosine positions, [CLS] and blocks, on the visible
    patches only. Decoder (light): a linear map to ``decoder_dim``, mask tokens, its own sine-cosine
    positions, ``decoder_depth`` Transformer blocks and a linear layer to P*P*3 pixels per patch.
    ``norm_pix_loss`` predicts each patch's pixels normalised by the patch's own mean and std.
    ``init="xavier"`` re-initialises every linear layer, encoder included, as the paper does.
    """

    def __init__(
        self,
        encoder: ViT,
        decoder_dim: int = 64,
        decoder_depth: int = 2,
        decoder_heads: int = 4,
        mask_ratio: float = 0.75,
        norm_pix_loss: bool = False,
        augment: ViewAugment | None = None,
        init: str = "xavier",
    ):
        super().__init__()
        if not isinstance(encoder, ViT):
            raise TypeError(
                f"MAE needs a vnotes.transformer.ViT encoder, got {type(encoder).__name__}"
            )
        if encoder.stem is not None:
            raise ValueError(
                "MAE masks image patches: use a ViT without a CNN stem"
            )
        if not 0.0 <= mask_ratio < 1.0:
            raise ValueError(f"mask_ratio={mask_ratio} must lie in [0, 1)")
        if init not in ("xavier", "keep"):
            raise ValueError(
                f"init={init!r} must be 'xavier' (the paper's) or 'keep' (the encoder's own weights)"
            )
        self.encoder, self.mask_ratio, self.norm_pix_loss = (
            encoder,
            mask_ratio,
            norm_pix_loss,
        )
        self.patch_size = encoder.patch_size
        dim = encoder.pos_embed.shape[-1]
        # MAE's encoder positions are fixed sine-cosine tables, not learned
        with torch.no_grad():
            encoder.pos_embed.copy_(
                sincos_position_embedding(dim, encoder.grid)
            )
        encoder.pos_embed.requires_grad_(False)
        self.decoder_embed = nn.Linear(dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        self.register_buffer(
            "decoder_pos_embed",
            sincos_position_embedding(decoder_dim, encoder.grid),
        )
        self.decoder_blocks = nn.ModuleList(
            TransformerBlock(decoder_dim, decoder_heads, mlp_ratio=4.0)
            for _ in range(decoder_depth)
        )
        self.decoder_norm = nn.LayerNorm(decoder_dim)
        self.decoder_pred = nn.Linear(decoder_dim, self.patch_size**2 * 3)
        nn.init.normal_(self.mask_token, std=0.02)
        if init == "xavier":
            self.apply(xavier_init)
        self.augment = augment or ViewAugment(
            size=encoder.image_size, scale=(0.3, 1.0), jitter_p=0.0, gray_p=0.0
        )

    def forward(self, x: Tensor) -> Tensor:
        """The representation used downstream: the encoder's [CLS] token on the whole, unmasked image."""
        return self.encoder.forward_features(x)[:, 0]

    def forward_encoder(
        self,
        images: Tensor,
        mask_ratio: float,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Encode the visible patches: latent ``[B, 1 + N_keep, dim]``, mask ``[B, N]``, ids_restore ``[B, N]``."""
        enc = self.encoder
        tokens, grid = enc.patch_embed(images)  # [B, N, dim]
        if tuple(grid) != tuple(enc.grid):
            raise ValueError(
                f"MAE runs at the encoder's own size {enc.image_size}; got a {grid} patch grid"
            )
        tokens = tokens + enc.pos_embed[:, 1:]
        visible, mask, ids_restore = random_masking(
            tokens, mask_ratio, generator
        )  # [B, N_keep, dim]
        cls = (enc.cls_token + enc.pos_embed[:, :1]).expand(
            tokens.shape[0], -1, -1
        )  # [B, 1, dim]
        z = torch.cat([cls, visible], dim=1)
        for block in enc.blocks:
            z = block(z)
        return enc.norm(z), mask, ids_restore

    def forward_decoder(self, latent: Tensor, ids_restore: Tensor) -> Tensor:
        """Predict every patch's pixels ``[B, N, P*P*3]`` from the encoded visible patches and mask tokens."""
        x = self.decoder_embed(latent)  # [B, 1 + N_keep, d]
        B, N = ids_restore.shape
        n_hidden = N - (x.shape[1] - 1)
        # append one mask token per hidden patch, then undo the shuffle so tokens sit at their positions
        patches = torch.cat(
            [x[:, 1:], self.mask_token.expand(B, n_hidden, -1)], dim=1
        )  # [B, N, d]
        patches = patches.gather(
            1, ids_restore[..., None].expand(-1, -1, x.shape[-1])
        )
        x = (
            torch.cat([x[:, :1], patches], dim=1) + self.decoder_pos_embed
        )  # [B, 1 + N, d]
        for block in self.decoder_blocks:
            x = block(x)
        return self.decoder_pred(self.decoder_norm(x))[:, 1:]  # drop [CLS]

    def reconstruction_loss(
        self, images: Tensor, prediction: Tensor, mask: Tensor
    ) -> Tensor:
        """Mean squared error per pixel, averaged over the masked patches only."""
        target = patchify(images, self.patch_size)  # [B, N, P*P*3]
        if self.norm_pix_loss:
            mean = target.mean(-1, keepdim=True)
            var = target.var(-1, keepdim=True)
            target = (target - mean) / (var + 1e-6).sqrt()
        per_patch = (prediction.float() - target).pow(2).mean(-1)  # [B, N]
        return (per_patch * mask).sum() / mask.sum().clamp_min(1)

    def training_step(
        self, images: Tensor
    ) -> tuple[Tensor, dict[str, Tensor]]:
        views = self.augment(images)
        latent, mask, ids_restore = self.forward_encoder(
            views, self.mask_ratio
        )
        prediction = self.forward_decoder(latent, ids_restore)
        return self.reconstruction_loss(views, prediction, mask), {}

    @torch.no_grad()
    def reconstruct(
        self,
        images: Tensor,
        mask_ratio: float | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``(masked input, prediction, prediction with the visible patches pasted back)``, all ``[B, 3, H, W]``.

        With ``norm_pix_loss`` the predicted patches are mapped back with each true patch's mean and
        std (as the paper's figures do), which uses information from the hidden patches.
        """
        was = self.training
        self.eval()
        ratio = self.mask_ratio if mask_ratio is None else mask_ratio
        latent, mask, ids_restore = self.forward_encoder(
            images, ratio, generator
        )
        pred = self.forward_decoder(latent, ids_restore).float()
        target = patchify(images, self.patch_size)
        if self.norm_pix_loss:
            mean, var = (
                target.mean(-1, keepdim=True),
                target.var(-1, keepdim=True),
            )
            pred = pred * (var + 1e-6).sqrt() + mean
        m = mask[..., None]
        masked = unpatchify(
            target * (1 - m) + 0.5 * m, self.patch_size
        )  # hidden patches grey
        full = unpatchify(pred, self.patch_size).clamp(0, 1)
        pasted = unpatchify(
            target * (1 - m) + pred * m, self.patch_size
        ).clamp(0, 1)
        self.train(was)
        return masked, full, pasted


@torch.no_grad()
def mean_fill_mse(
    images: Tensor,
    mask_ratio: float,
    patch_size: int,
    generator: torch.Generator | None = None,
) -> float:
    """Per-pixel MSE of the trivial reconstruction: every hidden patch filled with the mean colour of the visible ones.

    The yardstick for :meth:`MAE.reconstruct`: a decoder that learned nothing about shapes scores about this.
    """
    patches = patchify(images, patch_size)  # [B, N, P*P*3]
    B, N, D = patches.shape
    _, mask, _ = random_masking(
        patches, mask_ratio, generator
    )  # [B, N], 1 = hidden
    pixels = patches.view(B, N, -1, 3)  # [B, N, P*P, 3]
    visible = (1 - mask)[..., None, None]
    mean_colour = (pixels * visible).sum((1, 2)) / (
        visible.sum((1, 2)) * pixels.shape[2]
    )  # [B, 3]
    filled = torch.where(
        mask[..., None, None].bool(), mean_colour[:, None, None, :], pixels
    )
    return (filled - pixels).pow(2).mean().item()
