"""Autoencoders: the plain bottleneck AE, the VAE (Kingma & Welling, 2013) and the VQ-VAE (van den Oord et al., 2017).

Chapter 6 (generative models). In the notes' arrows:

* AE:      X -> E -> Z -> D -> X'                  (a deterministic code)
* VAE:     X -> E -> distribution -> Z -> D -> X'  (a Gaussian code, sampled by reparameterization)
* VQ-VAE:  X -> E -> nearest codebook entry -> Z -> D -> X'  (a discrete code: clustering in latent space)

Images are in [0, 1]. The AE and the VAE are multilayer perceptrons over the flattened image, as in
Kingma & Welling's MNIST experiments; the VQ-VAE is convolutional, as in its paper.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _mlp(sizes: Sequence[int]) -> nn.Sequential:
    """Linear layers with ReLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def _check_image_shape(image_shape: Sequence[int]) -> tuple[int, int, int]:
    if len(image_shape) != 3 or min(image_shape) < 1:
        raise ValueError(
            f"image_shape={tuple(image_shape)} must be (channels, height, width)"
        )
    return tuple(int(s) for s in image_shape)  # type: ignore[return-value]


# --------------------------------------------------------------------------- plain autoencoder
class Autoencoder(nn.Module):
    """X -> E -> Z -> D -> X': an MLP squeezed through a ``latent_dim`` bottleneck (Hinton & Salakhutdinov, 2006).

    The decoder returns logits; ``reconstruct`` applies the sigmoid.
    """

    def __init__(
        self,
        image_shape: Sequence[int] = (1, 16, 16),
        latent_dim: int = 8,
        hidden: Sequence[int] = (256, 128),
    ):
        super().__init__()
        self.image_shape = _check_image_shape(image_shape)
        if latent_dim < 1:
            raise ValueError(f"latent_dim={latent_dim} must be at least 1")
        self.latent_dim = latent_dim
        d = self.image_shape[0] * self.image_shape[1] * self.image_shape[2]
        self.encoder = _mlp([d, *hidden, latent_dim])
        self.decoder = _mlp([latent_dim, *reversed(hidden), d])

    def encode(self, x: Tensor) -> Tensor:
        """Codes z [B, latent_dim] of images [B, C, H, W]."""
        return self.encoder(x.flatten(1))

    def decode(self, z: Tensor) -> Tensor:
        """Pixel logits [B, C, H, W] of codes z [B, latent_dim]."""
        return self.decoder(z).reshape(-1, *self.image_shape)

    def forward(self, x: Tensor) -> Tensor:
        return self.decode(self.encode(x))

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        return torch.sigmoid(self.decode(self.encode(x)))


def autoencoder_loss(model: Autoencoder, x: Tensor) -> Tensor:
    """Bernoulli reconstruction loss: binary cross-entropy summed over pixels, averaged over the batch."""
    return (
        F.binary_cross_entropy_with_logits(
            model(x).float(), x, reduction="sum"
        )
        / x.shape[0]
    )


def fit_latent_gaussian(
    codes: Tensor,
) -> torch.distributions.MultivariateNormal:
    """A Gaussian fitted to an AE's training codes, to sample from an AE after training (Ghosh et al., 2020)."""
    codes = codes.double()
    mu = codes.mean(0)
    cov = torch.cov(codes.T) + 1e-6 * torch.eye(
        codes.shape[1], dtype=torch.float64
    )
    return torch.distributions.MultivariateNormal(mu, covariance_matrix=cov)


# --------------------------------------------------------------------------- VAE
def reparameterize(
    mu: Tensor, logvar: Tensor, noise: Tensor | None = None
) -> Tensor:
    """z = mu + sigma * eps, eps ~ N(0, I): a sample that gradients can flow through (Kingma & Welling, 2013)."""
    noise = torch.randn_like(mu) if noise is None else noise
    return mu + torch.exp(0.5 * logvar) * noise


def gaussian_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, sigma^2) || N(0, I)) per example, summed over latent dims: [B, D] -> [B].

    -KL = 1/2 sum_j (1 + log sigma_j^2 - mu_j^2 - sigma_j^2)   (Kingma & Welling, 2013, appendix B)
    """
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(-1)


class VAE(nn.Module):
    """X -> E -> N(mu, sigma^2) -> Z -> D -> X': the variational autoencoder (Kingma & Welling, 2013).

    An MLP encoder outputs the mean and log-variance of q(z | x); the decoder gives Bernoulli
    pixel logits of p(x | z); the prior is p(z) = N(0, I).
    """

    def __init__(
        self,
        image_shape: Sequence[int] = (1, 16, 16),
        latent_dim: int = 8,
        hidden: Sequence[int] = (256, 128),
    ):
        super().__init__()
        self.image_shape = _check_image_shape(image_shape)
        if latent_dim < 1:
            raise ValueError(f"latent_dim={latent_dim} must be at least 1")
        self.latent_dim = latent_dim
        d = self.image_shape[0] * self.image_shape[1] * self.image_shape[2]
        self.encoder = nn.Sequential(_mlp([d, *hidden]), nn.ReLU())
        self.to_mu = nn.Linear(hidden[-1], latent_dim)
        self.to_logvar = nn.Linear(hidden[-1], latent_dim)
        self.decoder = _mlp([latent_dim, *reversed(hidden), d])

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and log-variance [B, latent_dim] of q(z | x)."""
        h = self.encoder(x.flatten(1))
        return self.to_mu(h), self.to_logvar(h)

    def decode(self, z: Tensor) -> Tensor:
        """Bernoulli logits [B, C, H, W] of p(x | z)."""
        return self.decoder(z).reshape(-1, *self.image_shape)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(pixel logits, mu, logvar) for a reparameterized sample z ~ q(z | x)."""
        mu, logvar = self.encode(x)
        return self.decode(reparameterize(mu, logvar)), mu, logvar

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """Decode the posterior mean (no sampling noise)."""
        return torch.sigmoid(self.decode(self.encode(x)[0]))

    @torch.no_grad()
    def sample(
        self, n: int, generator: torch.Generator | None = None
    ) -> Tensor:
        """Images [n, C, H, W] decoded from z ~ p(z) = N(0, I)."""
        device = next(self.parameters()).device
        z = torch.randn(n, self.latent_dim, generator=generator).to(device)
        return torch.sigmoid(self.decode(z))


def vae_loss(
    model: VAE, x: Tensor, beta: float = 1.0
) -> tuple[Tensor, dict[str, Tensor]]:
    """Negative ELBO per example: -E_q[log p(x | z)] + beta KL(q(z | x) || p(z)); beta = 1 is the paper's bound."""
    logits, mu, logvar = model(x)
    recon = (
        F.binary_cross_entropy_with_logits(logits.float(), x, reduction="sum")
        / x.shape[0]
    )
    kl = gaussian_kl(mu.float(), logvar.float()).mean()
    return recon + beta * kl, {"recon": recon.detach(), "kl": kl.detach()}


# --------------------------------------------------------------------------- VQ-VAE
class VectorQuantizer(nn.Module):
    """Nearest-codebook quantization with a straight-through gradient (van den Oord et al., 2017).

    Codes that no input has chosen for ``dead_after`` training steps are restarted at random
    encoder outputs of the current batch (random restarts, Dhariwal et al., 2020), so the
    codebook does not lose entries for good. ``dead_after=0`` turns restarts off.
    """

    def __init__(
        self,
        num_codes: int = 32,
        code_dim: int = 16,
        beta: float = 0.25,
        dead_after: int = 50,
    ):
        super().__init__()
        if num_codes < 2 or code_dim < 1:
            raise ValueError(
                f"need num_codes >= 2 and code_dim >= 1, got {num_codes}, {code_dim}"
            )
        if dead_after < 0:
            raise ValueError(
                f"dead_after={dead_after} must be non-negative (0 = no restarts)"
            )
        self.num_codes, self.code_dim, self.beta, self.dead_after = (
            num_codes,
            code_dim,
            beta,
            dead_after,
        )
        self.codebook = nn.Embedding(num_codes, code_dim)
        nn.init.uniform_(self.codebook.weight, -1 / num_codes, 1 / num_codes)
        self.register_buffer(
            "steps_unused", torch.zeros(num_codes, dtype=torch.long)
        )
        self.restarts = 0

    def nearest(self, z_e: Tensor) -> Tensor:
        """Index of the nearest codebook entry for each vector z_e [N, D] -> [N]."""
        e = self.codebook.weight.float()  # [K, D]
        # ||z - e||^2 = ||z||^2 - 2 z.e + ||e||^2
        dist = (
            z_e.float().pow(2).sum(1, keepdim=True)
            - 2 * z_e.float() @ e.T
            + e.pow(2).sum(1)[None]
        )  # [N, K]
        return dist.argmin(1)

    def forward(self, z_e: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """Quantize a feature map z_e [B, D, h, w] -> (z_q with straight-through gradient, codes [B, h, w], losses)."""
        B, D, h, w = z_e.shape
        if D != self.code_dim:
            raise ValueError(
                f"z_e has {D} channels; the codebook has code_dim={self.code_dim}"
            )
        flat = z_e.permute(0, 2, 3, 1).reshape(-1, D).float()  # [B*h*w, D]
        codes = self.nearest(flat)  # [B*h*w]
        if self.training and self.dead_after:
            self._restart_dead_codes(flat.detach(), codes)
            codes = self.nearest(flat)
        z_q = self.codebook(codes)  # [B*h*w, D]
        # codebook loss ||sg[z_e] - e||^2 moves the codes; commitment loss ||z_e - sg[e]||^2 holds the encoder
        codebook_loss = F.mse_loss(z_q, flat.detach())
        commitment_loss = F.mse_loss(flat, z_q.detach())
        # straight-through estimator: the forward pass uses z_q, the backward pass copies the gradient to z_e
        z_st = flat + (z_q - flat).detach()
        z_st = z_st.reshape(B, h, w, D).permute(0, 3, 1, 2)  # [B, D, h, w]
        counts = torch.bincount(codes, minlength=self.num_codes).float()
        p = counts / counts.sum()
        perplexity = torch.exp(-(p[p > 0] * p[p > 0].log()).sum())
        losses = {
            "vq_loss": codebook_loss + self.beta * commitment_loss,
            "codebook_loss": codebook_loss.detach(),
            "commitment_loss": commitment_loss.detach(),
            "perplexity": perplexity.detach(),
        }
        return z_st, codes.reshape(B, h, w), losses

    @torch.no_grad()
    def _restart_dead_codes(self, flat: Tensor, codes: Tensor) -> None:
        used = torch.bincount(codes, minlength=self.num_codes) > 0
        self.steps_unused = torch.where(
            used, torch.zeros_like(self.steps_unused), self.steps_unused + 1
        )
        dead = torch.nonzero(self.steps_unused >= self.dead_after).flatten()
        if dead.numel():
            pick = torch.randint(
                0, flat.shape[0], (dead.numel(),), device=flat.device
            )
            self.codebook.weight[dead] = flat[pick].to(
                self.codebook.weight.dtype
            )
            self.steps_unused[dead] = 0
            self.restarts += int(dead.numel())


class _Residual(nn.Module):
    """ReLU, 3x3 conv, ReLU, 1x1 conv, plus the input (the VQ-VAE paper's residual block)."""

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.block = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(channels, hidden, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(hidden, channels, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.block(x)


class VQVAE(nn.Module):
    """X -> E -> nearest codebook entry -> D -> X' (van den Oord et al., 2017).

    The encoder halves the resolution ``downsamples`` times (1 or 2) with stride-2 4x4 convolutions,
    then two residual blocks; the decoder mirrors it with transposed convolutions. With two halvings
    a 16x16 image becomes a 4x4 grid of ``num_codes``-way discrete codes.
    """

    def __init__(
        self,
        in_channels: int = 1,
        hidden: int = 64,
        num_codes: int = 32,
        code_dim: int = 16,
        beta: float = 0.25,
        dead_after: int = 50,
        downsamples: int = 2,
    ):
        super().__init__()
        if downsamples not in (1, 2):
            raise ValueError(f"downsamples={downsamples} must be 1 or 2")
        self.in_channels, self.downsamples = in_channels, downsamples
        h = hidden
        second_down = (
            nn.Conv2d(h // 2, h, 4, stride=2, padding=1)
            if downsamples == 2
            else nn.Conv2d(h // 2, h, 3, padding=1)
        )
        second_up = (
            nn.ConvTranspose2d(h, h // 2, 4, stride=2, padding=1)
            if downsamples == 2
            else nn.Conv2d(h, h // 2, 3, padding=1)
        )
        self.encoder = nn.Sequential(
            nn.Conv2d(in_channels, h // 2, 4, stride=2, padding=1),
            nn.ReLU(),
            second_down,
            nn.ReLU(),
            nn.Conv2d(h, h, 3, padding=1),
            _Residual(h, h // 2),
            _Residual(h, h // 2),
            nn.ReLU(),
            nn.Conv2d(h, code_dim, 1),
        )
        self.quantizer = VectorQuantizer(num_codes, code_dim, beta, dead_after)
        self.decoder = nn.Sequential(
            nn.Conv2d(code_dim, h, 3, padding=1),
            _Residual(h, h // 2),
            _Residual(h, h // 2),
            nn.ReLU(),
            second_up,
            nn.ReLU(),
            nn.ConvTranspose2d(h // 2, in_channels, 4, stride=2, padding=1),
        )

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """(reconstruction [B, C, H, W], codes [B, h, w], quantizer losses)."""
        z_q, codes, losses = self.quantizer(self.encoder(x))
        return self.decoder(z_q), codes, losses

    @torch.no_grad()
    def encode(self, x: Tensor) -> Tensor:
        """Discrete codes [B, h, w] of images [B, C, H, W]."""
        z_e = self.encoder(x)
        B, D, h, w = z_e.shape
        return self.quantizer.nearest(
            z_e.permute(0, 2, 3, 1).reshape(-1, D)
        ).reshape(B, h, w)

    @torch.no_grad()
    def decode_codes(self, codes: Tensor) -> Tensor:
        """Images [B, C, H, W] (clamped to [0, 1]) decoded from code grids [B, h, w]."""
        z_q = self.quantizer.codebook(codes).permute(
            0, 3, 1, 2
        )  # [B, D, h, w]
        return self.decoder(z_q).clamp(0, 1)

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        return self.decode_codes(self.encode(x))


def vqvae_loss(model: VQVAE, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """L = ||x - D(z_q)||^2 + ||sg[z_e] - e||^2 + beta ||z_e - sg[e]||^2   (van den Oord et al., 2017, eq. 3)."""
    recon, _, losses = model(x)
    recon_loss = F.mse_loss(recon.float(), x)
    return recon_loss + losses["vq_loss"], {
        "recon": recon_loss.detach(),
        "perplexity": losses["perplexity"],
    }


def code_perplexity(codes: Tensor, num_codes: int) -> float:
    """exp(entropy of the code-usage histogram): how many codebook entries are in effective use."""
    p = torch.bincount(codes.flatten(), minlength=num_codes).double()
    p = p / p.sum()
    return float(torch.exp(-(p[p > 0] * p[p > 0].log()).sum()))


# --------------------------------------------------------------------------- the prior over codes
def code_sequences(codes: Tensor, num_codes: int) -> Tensor:
    """Code grids [B, h, w] -> token sequences [B, 1 + h*w] in raster order, led by a start token (id num_codes)."""
    start = torch.full(
        (codes.shape[0], 1), num_codes, dtype=torch.long, device=codes.device
    )
    return torch.cat([start, codes.flatten(1)], dim=1)


def code_prior_loss(prior: nn.Module, sequences: Tensor) -> Tensor:
    """Next-code cross-entropy of an autoregressive prior p(z) = prod_i p(z_i | z_<i) over code sequences."""
    logits = prior(sequences[:, :-1])  # [B, h*w, vocab]
    return F.cross_entropy(
        logits.flatten(0, 1).float(), sequences[:, 1:].flatten()
    )


@torch.no_grad()
def sample_codes(
    prior: nn.Module,
    n: int,
    grid: tuple[int, int],
    num_codes: int,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Draw code grids [n, h, w] from an autoregressive prior over code sequences, one code at a time.

    z_i ~ softmax(logits_i / temperature), with the start token's logit masked out (it is never a code).
    """
    if temperature <= 0:
        raise ValueError(f"temperature={temperature} must be positive")
    was = prior.training
    prior.eval()
    device = next(prior.parameters()).device
    seq = torch.full(
        (n, 1), num_codes, dtype=torch.long, device=device
    )  # [n, 1] start tokens
    for _ in range(grid[0] * grid[1]):
        logits = prior(seq)[:, -1].float() / temperature  # [n, vocab]
        logits[:, num_codes:] = float("-inf")
        probs = torch.softmax(logits, -1).cpu()
        nxt = torch.multinomial(probs, 1, generator=generator).to(
            device
        )  # [n, 1]
        seq = torch.cat([seq, nxt], 1)
    prior.train(was)
    return seq[:, 1:].reshape(n, *grid)
