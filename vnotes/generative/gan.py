"""Generative adversarial networks: Z -> G -> X -> D (Goodfellow et al., 2014), built the DCGAN way
(Radford et al., 2015).

Chapter 6 (generative models). DCGAN's rules: strided (transposed) convolutions instead of pooling,
batch normalization in both networks except the generator's output and the discriminator's input
layer, ReLU in the generator with tanh at its output, LeakyReLU (slope 0.2) in the discriminator,
weights drawn from N(0, 0.02), Adam with lr 2e-4 and beta1 = 0.5. Images live in [-1, 1].

When the training images are small scans enlarged by interpolation (the book's 16x16 digits are 8x8 scans
enlarged bilinearly), ``scan_size`` ends the generator with :class:`ScanGrid`, a fixed map with no weights
onto the images such data can hold, so the discriminator has to tell fakes by their shape.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def dcgan_init(module: nn.Module) -> None:
    """DCGAN's initialisation: conv weights ~ N(0, 0.02); batch-norm scales ~ N(1, 0.02), shifts 0."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class ScanGrid(nn.Module):
    """A fixed map (no weights) onto the images that scans of ``scan_size`` pixels enlarged to ``image_size`` can be.

    x [B, C, S, S] -> average over (S / s) x (S / s) blocks -> [B, C, s, s] -> bilinear enlargement back to S x S,
    the interpolation that made the training images from their scans. Every output is such an enlarged scan:
    the 256 pixels of a 16x16 digit have only 64 degrees of freedom. Both steps average, so [-1, 1] stays [-1, 1].
    """

    def __init__(self, scan_size: int, image_size: int):
        super().__init__()
        if scan_size < 1 or image_size % scan_size or scan_size >= image_size:
            raise ValueError(
                f"scan_size={scan_size} must be smaller than image_size={image_size} and divide it"
            )
        self.scan_size, self.image_size = scan_size, image_size

    def forward(self, x: Tensor) -> Tensor:
        scan = F.avg_pool2d(
            x, self.image_size // self.scan_size
        )  # [B, C, s, s]
        return F.interpolate(
            scan,
            size=(self.image_size, self.image_size),
            mode="bilinear",
            align_corners=False,
        )  # [B, C, S, S]

    def extra_repr(self) -> str:
        return f"scan_size={self.scan_size}, image_size={self.image_size}"


class DCGANGenerator(nn.Module):
    """G: z [B, z_dim] -> image [B, C, S, S] in [-1, 1]; a 4x4 projection, then one stride-2 transposed conv per doubling.

    With ``scan_size`` the output passes through :class:`ScanGrid` (see the module's docstring).
    """

    def __init__(
        self,
        z_dim: int = 32,
        out_channels: int = 1,
        width: int = 64,
        image_size: int = 16,
        scan_size: int | None = None,
    ):
        super().__init__()
        doublings = {8: 1, 16: 2, 32: 3, 64: 4}.get(image_size)
        if doublings is None:
            raise ValueError(
                f"image_size={image_size} is not supported; allowed: 8, 16, 32, 64"
            )
        self.z_dim = z_dim
        ch = width * 2 ** (doublings - 1)
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(z_dim, ch, 4, 1, 0, bias=False),
            nn.BatchNorm2d(ch),
            nn.ReLU(True),
        ]
        for _ in range(doublings - 1):  # 4 -> 8 -> ... -> S/2
            layers += [
                nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=False),
                nn.BatchNorm2d(ch // 2),
                nn.ReLU(True),
            ]
            ch //= 2
        layers += [
            nn.ConvTranspose2d(ch, out_channels, 4, 2, 1),
            nn.Tanh(),
        ]  # S/2 -> S, no batch norm at the output
        if scan_size is not None:
            layers.append(ScanGrid(scan_size, image_size))
        self.net = nn.Sequential(*layers)
        self.apply(dcgan_init)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(
            z[:, :, None, None]
        )  # [B, z_dim, 1, 1] -> [B, C, S, S]


class DCGANDiscriminator(nn.Module):
    """D: image [B, C, S, S] -> logit [B]; stride-2 convolutions with LeakyReLU, no batch norm on the input layer."""

    def __init__(
        self, in_channels: int = 1, width: int = 64, image_size: int = 16
    ):
        super().__init__()
        halvings = {8: 1, 16: 2, 32: 3, 64: 4}.get(image_size)
        if halvings is None:
            raise ValueError(
                f"image_size={image_size} is not supported; allowed: 8, 16, 32, 64"
            )
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, width, 4, 2, 1),
            nn.LeakyReLU(0.2, True),
        ]
        ch = width
        for _ in range(halvings - 1):  # S/2 -> ... -> 4
            layers += [
                nn.Conv2d(ch, ch * 2, 4, 2, 1, bias=False),
                nn.BatchNorm2d(ch * 2),
                nn.LeakyReLU(0.2, True),
            ]
            ch *= 2
        layers += [nn.Conv2d(ch, 1, 4, 1, 0)]  # 4x4 -> 1x1 logit
        self.net = nn.Sequential(*layers)
        self.apply(dcgan_init)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).flatten()  # [B]


class GAN(nn.Module):
    """The pair (generator, discriminator), so :func:`vnotes.fit` can move and checkpoint both."""

    def __init__(
        self, generator: DCGANGenerator, discriminator: DCGANDiscriminator
    ):
        super().__init__()
        self.generator, self.discriminator = generator, discriminator

    @torch.no_grad()
    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        z: Tensor | None = None,
    ) -> Tensor:
        """Images [n, C, S, S] in [-1, 1] from z ~ N(0, I) (or the given ``z`` [n, z_dim]), drawn as DCGAN's
        reference code draws them: the generator in training mode, so batch norm normalises each layer with the
        statistics of the batch being drawn, as in every step the discriminator judged, not with running averages.

        The running averages that forward pass updates are put back: sampling leaves the model as it was.
        """
        device = next(self.parameters()).device
        if z is None:
            z = torch.randn(n, self.generator.z_dim, generator=generator)
        if z.shape != (n, self.generator.z_dim):
            raise ValueError(
                f"z has shape {tuple(z.shape)}; expected ({n}, {self.generator.z_dim})"
            )
        was = self.generator.training
        running = [b.clone() for b in self.generator.buffers()]
        self.generator.train()
        x = self.generator(z.to(device))  # [n, C, S, S]
        for b, saved in zip(self.generator.buffers(), running):
            b.copy_(saved)
        self.generator.train(was)
        return x


def dcgan(
    z_dim: int = 32,
    channels: int = 1,
    image_size: int = 16,
    g_width: int = 64,
    d_width: int = 64,
    scan_size: int | None = None,
) -> GAN:
    """DCGAN (Radford et al., 2015) sized for small images (``scan_size``: see :class:`ScanGrid`)."""
    return GAN(
        DCGANGenerator(z_dim, channels, g_width, image_size, scan_size),
        DCGANDiscriminator(channels, d_width, image_size),
    )


class AdversarialStep:
    """A ``step_fn`` for :func:`vnotes.fit` that plays one round of the GAN game (Goodfellow et al., 2014, Algorithm 1).

    It first updates the discriminator with its own optimizer,
        max_D  E_x log D(x) + E_z log(1 - D(G(z))),
    then returns the generator's non-saturating loss  -E_z log D(G(z))  for ``fit`` to minimise with
    the generator's optimizer (the one passed to ``fit``).
    """

    def __init__(
        self,
        d_optimizer: torch.optim.Optimizer,
        z_dim: int,
        generator: torch.Generator | None = None,
    ):
        self.d_optimizer, self.z_dim, self.generator = (
            d_optimizer,
            z_dim,
            generator,
        )

    def __call__(
        self, model: nn.Module, batch: Any
    ) -> tuple[Tensor, dict[str, Tensor]]:
        real = batch[0]  # [B, C, S, S] in [-1, 1]
        B = real.shape[0]
        z = torch.randn(B, self.z_dim, generator=self.generator).to(
            real.device
        )
        fake = model.generator(z)
        # discriminator: real -> 1, fake -> 0 (separate batches, as in DCGAN)
        d_real = model.discriminator(real).float()
        d_fake = model.discriminator(fake.detach()).float()
        d_loss = F.binary_cross_entropy_with_logits(
            d_real, torch.ones_like(d_real)
        ) + F.binary_cross_entropy_with_logits(
            d_fake, torch.zeros_like(d_fake)
        )
        self.d_optimizer.zero_grad(set_to_none=True)
        d_loss.backward()
        self.d_optimizer.step()
        # generator: make the updated discriminator call the fakes real. Its loss needs gradients through D to
        # G only: D's weights are frozen for this forward pass, so the backward pass skips their gradients, which
        # nothing used (the same generator update; a default step 56 -> 53 ms on the 2-core AVX2 EPYC)
        model.discriminator.requires_grad_(False)
        d_fake_for_g = model.discriminator(fake).float()
        model.discriminator.requires_grad_(True)
        g_loss = F.binary_cross_entropy_with_logits(
            d_fake_for_g, torch.ones_like(d_fake_for_g)
        )
        return g_loss, {
            "d_loss": d_loss.detach(),
            "D(x)": torch.sigmoid(d_real).mean().detach(),
            "D(G(z))": torch.sigmoid(d_fake).mean().detach(),
        }


def dcgan_optimizers(
    gan: GAN, lr: float = 2e-4, betas: tuple[float, float] = (0.5, 0.999)
) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
    """DCGAN's Adam settings, one optimizer per network: (generator's, discriminator's)."""
    return (
        torch.optim.Adam(gan.generator.parameters(), lr=lr, betas=betas),
        torch.optim.Adam(gan.discriminator.parameters(), lr=lr, betas=betas),
    )


def pairwise_diversity(features: Tensor) -> float:
    """Mean Euclidean distance between all pairs of feature vectors [N, F]: low for a collapsed generator."""
    if features.shape[0] < 2:
        raise ValueError("need at least two feature vectors")
    d = torch.cdist(features.double(), features.double())
    n = features.shape[0]
    return float(d.sum() / (n * (n - 1)))
