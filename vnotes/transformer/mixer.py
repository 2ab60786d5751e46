"""MLP-Mixer (Tolstikhin et al., 2021): no attention, only MLPs across patches and across channels (``04d_swin_mixer``).

A Mixer layer takes the table X of S patches by C channels and applies, with skip connections,
U = X + W_2 GELU(W_1 LN(X)^T)^T   (token mixing: one MLP shared by all channels, over the S patches)
Y = U + W_4 GELU(W_3 LN(U))       (channel mixing: one MLP shared by all patches, over the C channels)
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from .attention import MLP, init_transformer_weights
from .vit import PatchEmbedding


class MixerBlock(nn.Module):
    """One Mixer layer (Tolstikhin et al., 2021, Eq. 1): token mixing, then channel mixing, each pre-norm with a skip."""

    def __init__(
        self,
        num_patches: int,
        dim: int,
        token_mlp_dim: int,
        channel_mlp_dim: int,
    ):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.token_mixing = MLP(
            num_patches, token_mlp_dim
        )  # acts along the patch axis
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.channel_mixing = MLP(
            dim, channel_mlp_dim
        )  # acts along the channel axis

    def forward(self, x: Tensor) -> Tensor:
        """``x``: ``[B, S, C]`` -> ``[B, S, C]``."""
        # U = X + (MLP_1(LN(X)^T))^T: transpose so the MLP runs over the S patches of each channel
        x = x + self.token_mixing(self.norm1(x).transpose(1, 2)).transpose(
            1, 2
        )
        # Y = U + MLP_2(LN(U))
        return x + self.channel_mixing(self.norm2(x))


class MLPMixer(nn.Module):
    """MLP-Mixer (Tolstikhin et al., 2021): per-patch linear embedding, Mixer layers, LayerNorm, average pool, head."""

    def __init__(
        self,
        image_size: int = 32,
        patch_size: int = 4,
        in_channels: int = 3,
        num_classes: int = 10,
        dim: int = 64,
        depth: int = 4,
        token_mlp_dim: int = 64,
        channel_mlp_dim: int = 128,
    ):
        super().__init__()
        if image_size % patch_size:
            raise ValueError(
                f"patch_size={patch_size} does not divide image_size={image_size}"
            )
        self.image_size, self.patch_size = image_size, patch_size
        self.num_patches = (image_size // patch_size) ** 2
        self.patch_embed = PatchEmbedding(patch_size, in_channels, dim)
        self.blocks = nn.ModuleList(
            MixerBlock(self.num_patches, dim, token_mlp_dim, channel_mlp_dim)
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, num_classes)
        self.apply(init_transformer_weights)
        nn.init.zeros_(
            self.head.weight
        )  # the paper initialises the head to zero

    def forward_features(self, x: Tensor) -> Tensor:
        """Patch features after the last layer and the LayerNorm, ``[B, S, C]``."""
        tokens, grid = self.patch_embed(x)
        if grid[0] * grid[1] != self.num_patches:
            # the token-mixing MLPs have one weight per patch position: the input size is fixed
            raise ValueError(
                f"this Mixer was built for {self.image_size}x{self.image_size} images; "
                f"got {tuple(x.shape[-2:])}"
            )
        for block in self.blocks:
            tokens = block(tokens)
        return self.norm(tokens)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.forward_features(x).mean(dim=1))


@dataclass(frozen=True)
class MixerConfig:
    """One row of Table 1 of Tolstikhin et al. (2021)."""

    patch_size: int
    dim: int  # hidden size C
    token_mlp_dim: int  # D_S
    channel_mlp_dim: int  # D_C
    depth: int
    params_millions: (
        int  # as printed in the paper (224 x 224 inputs, 1000 classes)
    )


MIXER_CONFIGS: dict[str, MixerConfig] = {
    "Mixer-S/32": MixerConfig(32, 512, 256, 2048, 8, 19),
    "Mixer-S/16": MixerConfig(16, 512, 256, 2048, 8, 18),
    "Mixer-B/32": MixerConfig(32, 768, 384, 3072, 12, 60),
    "Mixer-B/16": MixerConfig(16, 768, 384, 3072, 12, 59),
    "Mixer-L/32": MixerConfig(32, 1024, 512, 4096, 24, 206),
    "Mixer-L/16": MixerConfig(16, 1024, 512, 4096, 24, 207),
    "Mixer-H/14": MixerConfig(14, 1280, 640, 5120, 32, 431),
}


def mlp_mixer(
    name: str, num_classes: int = 1000, image_size: int = 224
) -> MLPMixer:
    """A Mixer from the paper's table by name, e.g. ``mlp_mixer("Mixer-B/16")``."""
    if name not in MIXER_CONFIGS:
        raise ValueError(
            f"name={name!r} is unknown; allowed: {sorted(MIXER_CONFIGS)}"
        )
    cfg = MIXER_CONFIGS[name]
    return MLPMixer(
        image_size=image_size,
        patch_size=cfg.patch_size,
        num_classes=num_classes,
        dim=cfg.dim,
        depth=cfg.depth,
        token_mlp_dim=cfg.token_mlp_dim,
        channel_mlp_dim=cfg.channel_mlp_dim,
    )


def mixer_toy(
    num_classes: int = 6,
    image_size: int = 32,
    patch_size: int = 4,
    dim: int = 64,
    depth: int = 4,
    token_mlp_dim: int = 64,
    channel_mlp_dim: int = 128,
) -> MLPMixer:
    """A Mixer for 32 x 32 toy-world images: 64 patches of 4 x 4, width 64."""
    return MLPMixer(
        image_size=image_size,
        patch_size=patch_size,
        num_classes=num_classes,
        dim=dim,
        depth=depth,
        token_mlp_dim=token_mlp_dim,
        channel_mlp_dim=channel_mlp_dim,
    )
