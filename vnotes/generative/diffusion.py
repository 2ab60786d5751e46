"""Denoising diffusion: DDPM (Ho et al., 2020), DDIM sampling (Song et al., 2021), and
classifier-free guidance (Ho & Salimans, 2022), with the small U-Net that predicts the noise.

Chapter 6 (generative models). The forward process adds Gaussian noise in ``T`` steps,

    q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I),

which composes into one closed-form jump from the data, q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I)
with abar_t = prod_{s<=t} (1 - beta_s). A network eps_theta(x_t, t) learns to predict the noise that was
added; the reverse process p(x_{t-1} | x_t) then walks from pure noise back to an image.

Time indices are 0-based in code: ``t = 0`` is the paper's t = 1 (the first, smallest noise step),
``t = T - 1`` the last. Images live in [-1, 1].
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..scales import dry_run_steps
from ..transformer.attention import fused_attention

SCHEDULES = ("linear", "cosine")


# --------------------------------------------------------------------------- noise schedules
def linear_beta_schedule(
    timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02
) -> Tensor:
    """Ho et al. (2020): betas rising linearly from 1e-4 to 0.02 over T = 1000 steps (rescaled for other T)."""
    if timesteps < 1:
        raise ValueError(f"timesteps={timesteps} must be at least 1")
    scale = (
        1000.0 / timesteps
    )  # Nichol & Dhariwal (2021): keep the same total noise for any T
    return torch.linspace(
        scale * beta_start, scale * beta_end, timesteps, dtype=torch.float64
    ).clamp(max=0.999)


def cosine_alpha_bar(timesteps: int, s: float = 0.008) -> Tensor:
    """Nichol & Dhariwal (2021): abar(t) = f(t) / f(0), f(t) = cos^2(((t/T + s) / (1 + s)) * pi / 2), t = 0..T."""
    steps = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps
    f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
    return f / f[0]  # [T + 1], abar(0) = 1


def cosine_beta_schedule(timesteps: int, s: float = 0.008) -> Tensor:
    """Nichol & Dhariwal (2021): beta_t = 1 - abar(t) / abar(t - 1), clipped at 0.999 near t = T."""
    if timesteps < 1:
        raise ValueError(f"timesteps={timesteps} must be at least 1")
    abar = cosine_alpha_bar(timesteps, s)
    return (1 - abar[1:] / abar[:-1]).clamp(max=0.999)


# --------------------------------------------------------------------------- the process
class GaussianDiffusion:
    """The DDPM forward process, its training loss and two samplers (Ho et al., 2020; Song et al., 2021).

    ``cond_drop_prob`` is the share of training examples whose condition is replaced by the
    learned "no condition" embedding, so one network learns both p(x | c) and p(x) and can be
    guided at sampling time (classifier-free guidance, Ho & Salimans, 2022).

    ``min_snr_gamma`` weights each example's noise-prediction error by min(SNR_t, gamma) / SNR_t, with
    SNR_t = abar_t / (1 - abar_t) (Min-SNR-gamma, Hang et al., 2023): the many nearly clean steps, whose
    noise is easy to read off, count less, and the noisy steps that settle an image's layout count fully.
    None keeps Ho et al.'s unweighted L_simple.
    """

    def __init__(
        self,
        timesteps: int = 1000,
        schedule: str = "linear",
        cond_drop_prob: float = 0.1,
        clip_denoised: bool = True,
        min_snr_gamma: float | None = None,
    ):
        if schedule not in SCHEDULES:
            raise ValueError(
                f"schedule={schedule!r} is unknown; allowed: {SCHEDULES}"
            )
        if not 0.0 <= cond_drop_prob <= 1.0:
            raise ValueError(
                f"cond_drop_prob={cond_drop_prob} must lie in [0, 1]"
            )
        if min_snr_gamma is not None and not min_snr_gamma > 0:
            raise ValueError(
                f"min_snr_gamma={min_snr_gamma} must be positive (or None: unweighted)"
            )
        self.timesteps, self.schedule = int(timesteps), schedule
        self.cond_drop_prob, self.clip_denoised = cond_drop_prob, clip_denoised
        self.min_snr_gamma = min_snr_gamma
        betas = (
            linear_beta_schedule(timesteps)
            if schedule == "linear"
            else cosine_beta_schedule(timesteps)
        )
        alphas = 1.0 - betas
        alpha_bar = torch.cumprod(alphas, 0)  # abar_t
        alpha_bar_prev = torch.cat(
            [torch.ones(1, dtype=torch.float64), alpha_bar[:-1]]
        )
        # everything is computed in float64 and stored in float32
        f32 = lambda a: a.to(torch.float32)
        self.betas, self.alphas, self.alpha_bar, self.alpha_bar_prev = map(
            f32, (betas, alphas, alpha_bar, alpha_bar_prev)
        )
        self.sqrt_alpha_bar = f32(alpha_bar.sqrt())
        snr = alpha_bar / (1 - alpha_bar)
        self.loss_weight = (
            None
            if min_snr_gamma is None
            else f32(snr.clamp(max=min_snr_gamma) / snr)
        )  # [T], min(SNR_t, gamma) / SNR_t
        self.sqrt_one_minus_alpha_bar = f32((1 - alpha_bar).sqrt())
        # posterior q(x_{t-1} | x_t, x_0) = N(c0 x_0 + ct x_t, beta_tilde_t)   (Ho et al., eq. 6-7)
        self.posterior_variance = f32(
            betas * (1 - alpha_bar_prev) / (1 - alpha_bar)
        )
        self.posterior_coef_x0 = f32(
            betas * alpha_bar_prev.sqrt() / (1 - alpha_bar)
        )
        self.posterior_coef_xt = f32(
            (1 - alpha_bar_prev) * alphas.sqrt() / (1 - alpha_bar)
        )

    def __repr__(self) -> str:
        return f"GaussianDiffusion(timesteps={self.timesteps}, schedule={self.schedule!r})"

    @staticmethod
    def _at(values: Tensor, t: Tensor, x: Tensor) -> Tensor:
        """values[t] reshaped to broadcast over an image batch: [B] -> [B, 1, 1, 1]."""
        out = values.to(x.device)[t.to(x.device)]
        return out.reshape(-1, *([1] * (x.ndim - 1))).to(x.dtype)

    def _check_t(self, t: Tensor) -> None:
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= self.timesteps):
            raise ValueError(
                f"timesteps must lie in 0..{self.timesteps - 1}, got {int(t.min())}..{int(t.max())}"
            )

    # ----------------------------------------------------------------- forward (noising)
    def q_sample(
        self, x0: Tensor, t: Tensor, noise: Tensor | None = None
    ) -> Tensor:
        """Jump straight to step t: x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps   (Ho et al., eq. 4)."""
        self._check_t(t)
        noise = torch.randn_like(x0) if noise is None else noise
        return (
            self._at(self.sqrt_alpha_bar, t, x0) * x0
            + self._at(self.sqrt_one_minus_alpha_bar, t, x0) * noise
        )

    def q_step(
        self, x_prev: Tensor, t: Tensor, noise: Tensor | None = None
    ) -> Tensor:
        """One forward step: x_t = sqrt(1 - beta_t) x_{t-1} + sqrt(beta_t) eps   (Ho et al., eq. 2)."""
        self._check_t(t)
        noise = torch.randn_like(x_prev) if noise is None else noise
        return (
            self._at(self.alphas, t, x_prev).sqrt() * x_prev
            + self._at(self.betas, t, x_prev).sqrt() * noise
        )

    def q_sample_stepwise(
        self,
        x0: Tensor,
        t: int,
        generator: torch.Generator | None = None,
        keep: Sequence[int] = (),
    ) -> tuple[Tensor, dict[int, Tensor]]:
        """Noise x_0 one step at a time up to step ``t`` (inclusive); also return the states at steps ``keep``."""
        if not 0 <= t < self.timesteps:
            raise ValueError(f"t={t} must lie in 0..{self.timesteps - 1}")
        x, kept = x0, {}
        for s in range(t + 1):
            noise = torch.randn(x0.shape, generator=generator).to(x0)
            x = self.q_step(
                x, torch.full((x0.shape[0],), s, dtype=torch.long), noise
            )
            if s in keep:
                kept[s] = x
        return x, kept

    def stepwise_coefficients(self) -> tuple[Tensor, Tensor]:
        """Compose the one-step maps exactly: x_t = m_t x_0 + (noise with variance v_t); returns (m, v) for all t.

        m_t = sqrt(1 - beta_t) m_{t-1} and v_t = (1 - beta_t) v_{t-1} + beta_t, from m = 1, v = 0 before step 0.
        The closed form says m_t = sqrt(abar_t) and v_t = 1 - abar_t.
        """
        betas = self.betas.double()
        m, v = torch.empty_like(betas), torch.empty_like(betas)
        m_prev, v_prev = (
            torch.ones((), dtype=torch.float64),
            torch.zeros((), dtype=torch.float64),
        )
        for s in range(self.timesteps):
            m_prev = (1 - betas[s]).sqrt() * m_prev
            v_prev = (1 - betas[s]) * v_prev + betas[s]
            m[s], v[s] = m_prev, v_prev
        return m, v

    # ----------------------------------------------------------------- training
    def loss(
        self, model: nn.Module, x0: Tensor, cond: Tensor | None = None
    ) -> Tensor:
        """L_simple = E_{t, eps} || eps - eps_theta(x_t, t, c) ||^2   (Ho et al., eq. 14; condition dropped at random),
        each example weighted by min(SNR_t, gamma) / SNR_t when the process has a ``min_snr_gamma``."""
        B = x0.shape[0]
        t = torch.randint(0, self.timesteps, (B,), device=x0.device)
        noise = torch.randn_like(x0)
        x_t = self.q_sample(x0, t, noise)
        keep = None
        if cond is not None and self.cond_drop_prob > 0:
            keep = (
                torch.rand(B, device=x0.device) >= self.cond_drop_prob
            )  # [B], False = "no condition"
        if self.loss_weight is None:
            return F.mse_loss(model(x_t, t, cond, keep).float(), noise)
        err = (model(x_t, t, cond, keep).float() - noise).pow(2)
        per_example = err.reshape(B, -1).mean(1)  # [B]
        return (self.loss_weight.to(x0.device)[t] * per_example).mean()

    # ----------------------------------------------------------------- reverse (denoising)
    def predict_noise(
        self,
        model: nn.Module,
        x: Tensor,
        t: Tensor,
        cond: Tensor | None = None,
        guidance_scale: float = 0.0,
    ) -> Tensor:
        """eps_theta(x_t, t, c); guided: (1 + w) eps(x_t, c) - w eps(x_t, no c)   (Ho & Salimans, 2022, eq. 6)."""
        if cond is None or guidance_scale == 0.0:
            return model(x, t, cond).float()
        B = x.shape[0]
        keep = torch.cat(
            [torch.ones(B, dtype=torch.bool), torch.zeros(B, dtype=torch.bool)]
        ).to(x.device)
        eps_cond, eps_uncond = (
            model(
                torch.cat([x, x]),
                torch.cat([t, t]),
                torch.cat([cond, cond]),
                keep,
            )
            .float()
            .chunk(2)
        )
        return (1 + guidance_scale) * eps_cond - guidance_scale * eps_uncond

    def predict_x0(self, x_t: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        """Invert eq. 4: x_0 = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t), clipped to [-1, 1] if asked."""
        x0 = (
            x_t - self._at(self.sqrt_one_minus_alpha_bar, t, x_t) * eps
        ) / self._at(self.sqrt_alpha_bar, t, x_t)
        return x0.clamp(-1, 1) if self.clip_denoised else x0

    def q_posterior(
        self, x0: Tensor, x_t: Tensor, t: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Mean and variance of q(x_{t-1} | x_t, x_0)   (Ho et al., eq. 6-7)."""
        mean = (
            self._at(self.posterior_coef_x0, t, x_t) * x0
            + self._at(self.posterior_coef_xt, t, x_t) * x_t
        )
        return mean, self._at(self.posterior_variance, t, x_t)

    def _start(self, shape: Sequence[int], device, generator) -> Tensor:
        return torch.randn(tuple(shape), generator=generator).to(device)

    @torch.no_grad()
    def sample(
        self,
        model: nn.Module,
        shape: Sequence[int],
        cond: Tensor | None = None,
        guidance_scale: float = 0.0,
        generator: torch.Generator | None = None,
        keep: Sequence[int] = (),
        device: torch.device | str | None = None,
    ) -> Tensor | tuple[Tensor, dict[int, Tensor]]:
        """Ancestral sampling, all T steps: x_{t-1} = mu_theta(x_t, t) + sigma_t z   (Ho et al., Algorithm 2).

        With ``keep`` (step indices) also returns ``{t: x_t}`` along the way, to draw the trajectory.
        """
        device = device or next(model.parameters()).device
        was = model.training
        model.eval()
        x = self._start(shape, device, generator)  # x_T ~ N(0, I)
        kept = {}
        dry = (
            dry_run_steps()
        )  # a dry run calls the model on its first steps and the last only
        for n, i in enumerate(reversed(range(self.timesteps))):
            if dry is not None and 0 < i and n >= dry:
                if i in keep:
                    kept[i] = x.clone()
                continue
            t = torch.full((shape[0],), i, dtype=torch.long, device=device)
            eps = self.predict_noise(model, x, t, cond, guidance_scale)
            mean, var = self.q_posterior(self.predict_x0(x, t, eps), x, t)
            z = torch.randn(tuple(shape), generator=generator).to(
                device
            )  # drawn every step, used for t > 0
            x = mean + (var.sqrt() * z if i > 0 else 0.0)
            if i in keep:
                kept[i] = x.clone()
        model.train(was)
        return (x, kept) if keep else x

    def ddim_timesteps(self, steps: int) -> list[int]:
        """The sub-sequence tau of 0..T-1 the DDIM sampler visits: ``steps`` evenly spaced indices, last = T - 1."""
        if not 1 <= steps <= self.timesteps:
            raise ValueError(f"steps={steps} must lie in 1..{self.timesteps}")
        return (
            torch.linspace(0, self.timesteps - 1, steps)
            .round()
            .long()
            .unique()
            .tolist()
        )

    @torch.no_grad()
    def ddim_sample(
        self,
        model: nn.Module,
        shape: Sequence[int],
        steps: int,
        cond: Tensor | None = None,
        guidance_scale: float = 0.0,
        eta: float = 0.0,
        generator: torch.Generator | None = None,
        keep: Sequence[int] = (),
        device: torch.device | str | None = None,
    ) -> Tensor | tuple[Tensor, dict[int, Tensor]]:
        """DDIM (Song et al., 2021, eq. 12): deterministic for eta = 0, DDPM's ancestral sampler for eta = 1 and all steps.

        x_{prev} = sqrt(abar_prev) x0_hat + sqrt(1 - abar_prev - sigma^2) eps_theta + sigma z,
        sigma = eta sqrt((1 - abar_prev) / (1 - abar_t)) sqrt(1 - abar_t / abar_prev).
        """
        if eta < 0:
            raise ValueError(f"eta={eta} must be non-negative")
        device = device or next(model.parameters()).device
        was = model.training
        model.eval()
        taus = self.ddim_timesteps(steps)
        x = self._start(shape, device, generator)
        kept = {}
        dry = dry_run_steps()
        for k in reversed(range(len(taus))):
            i = taus[k]
            if dry is not None and 0 < k and len(taus) - 1 - k >= dry:
                if i in keep:
                    kept[i] = x.clone()
                continue
            t = torch.full((shape[0],), i, dtype=torch.long, device=device)
            eps = self.predict_noise(model, x, t, cond, guidance_scale)
            x0 = self.predict_x0(x, t, eps)
            if self.clip_denoised:  # keep eps consistent with the clipped x0 (as the DDIM reference code does)
                eps = (
                    x - self._at(self.sqrt_alpha_bar, t, x) * x0
                ) / self._at(self.sqrt_one_minus_alpha_bar, t, x)
            abar = self.alpha_bar[i].item()
            abar_prev = self.alpha_bar[taus[k - 1]].item() if k > 0 else 1.0
            sigma = eta * math.sqrt(
                (1 - abar_prev) / (1 - abar) * (1 - abar / abar_prev)
            )
            z = torch.randn(tuple(shape), generator=generator).to(device)
            x = (
                math.sqrt(abar_prev) * x0
                + math.sqrt(max(1 - abar_prev - sigma**2, 0.0)) * eps
                + sigma * z
            )
            if i in keep:
                kept[i] = x.clone()
        model.train(was)
        return (x, kept) if keep else x


# --------------------------------------------------------------------------- the U-Net
def timestep_embedding(
    t: Tensor, dim: int, max_period: float = 10000.0
) -> Tensor:
    """Sinusoidal embedding of the step t, as Transformer positions (Vaswani et al., 2017): [B] -> [B, dim]."""
    if dim % 2:
        raise ValueError(f"dim={dim} must be even")
    half = dim // 2
    # omega_k = max_period^(-k / half), k = 0..half-1
    freqs = torch.exp(
        -math.log(max_period)
        * torch.arange(half, device=t.device, dtype=torch.float32)
        / half
    )
    angles = t.float()[:, None] * freqs[None]  # [B, half]
    return torch.cat(
        [torch.sin(angles), torch.cos(angles)], dim=-1
    )  # [B, dim]


def _norm(channels: int) -> nn.GroupNorm:
    """GroupNorm (Wu & He, 2018) as in the DDPM U-Net, with 8 groups (the paper's 32 is too many for 16 channels)."""
    return nn.GroupNorm(min(8, channels), channels)


class ResBlock(nn.Module):
    """A wide-ResNet block with the step (and condition) embedding added between its two convolutions (Ho et al., 2020)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        emb_dim: int,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.norm1, self.conv1 = (
            _norm(in_channels),
            nn.Conv2d(in_channels, out_channels, 3, padding=1),
        )
        self.emb_proj = nn.Linear(emb_dim, out_channels)
        self.norm2, self.conv2 = (
            _norm(out_channels),
            nn.Conv2d(out_channels, out_channels, 3, padding=1),
        )
        self.dropout = nn.Dropout(dropout)
        nn.init.zeros_(
            self.conv2.weight
        )  # each block starts as the identity (as in the DDPM code)
        nn.init.zeros_(self.conv2.bias)
        self.skip = (
            nn.Conv2d(in_channels, out_channels, 1)
            if in_channels != out_channels
            else nn.Identity()
        )

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))  # [B, C_out, H, W]
        h = h + self.emb_proj(F.silu(emb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class AttentionBlock(nn.Module):
    """Single-head self-attention over the pixels of a feature map, with a residual connection (Ho et al., 2020)."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = _norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: Tensor) -> Tensor:
        B, C, H, W = x.shape
        q, k, v = (
            self.qkv(self.norm(x))
            .reshape(B, 3, C, H * W)
            .transpose(-1, -2)
            .unbind(1)
        )  # each [B, HW, C]
        # softmax(q k^T / sqrt(C)) v
        h = fused_attention(q[:, None], k[:, None], v[:, None])[
            :, 0
        ]  # [B, HW, C]
        return x + self.proj(h.transpose(-1, -2).reshape(B, C, H, W))


class UNet(nn.Module):
    """The DDPM noise predictor eps_theta(x_t, t, c): a U-Net of ResBlocks with attention at low resolution
    (Ronneberger et al., 2015; Ho et al., 2020).

    The condition is a class label (``num_classes``) or a vector of size ``cond_dim`` (e.g. an image
    embedding, as DALL-E 2's decoder uses); it is embedded and added to the step embedding. A learned
    "no condition" embedding stands in where ``cond`` is None or ``cond_mask`` is False (classifier-free
    guidance, Ho & Salimans, 2022).
    """

    def __init__(
        self,
        in_channels: int = 1,
        base_channels: int = 32,
        num_classes: int | None = None,
        cond_dim: int | None = None,
        channel_mults: Sequence[int] = (1, 2, 2),
        num_res_blocks: int = 1,
        attention_resolutions: Sequence[int] = (4,),
        image_size: int = 16,
        dropout: float = 0.0,
    ):
        super().__init__()
        if num_classes is not None and cond_dim is not None:
            raise ValueError(
                "give num_classes (a class label) or cond_dim (a vector), not both"
            )
        if base_channels % 8:
            raise ValueError(
                f"base_channels={base_channels} must be a multiple of 8 (GroupNorm with 8 groups)"
            )
        if image_size % 2 ** (len(channel_mults) - 1):
            raise ValueError(
                f"image_size={image_size} is not divisible by 2^{len(channel_mults) - 1} "
                f"(one halving per level after the first of channel_mults={tuple(channel_mults)})"
            )
        self.in_channels, self.image_size = in_channels, image_size
        self.num_classes, self.cond_dim = num_classes, cond_dim
        emb_dim = 4 * base_channels
        self.time_embed = nn.Sequential(
            nn.Linear(base_channels, emb_dim),
            nn.SiLU(),
            nn.Linear(emb_dim, emb_dim),
        )
        if num_classes is not None:
            self.cond_embed: nn.Module | None = nn.Embedding(
                num_classes, emb_dim
            )
        elif cond_dim is not None:
            self.cond_embed = nn.Linear(cond_dim, emb_dim)
        else:
            self.cond_embed = None
        self.null_embed = (
            nn.Parameter(torch.zeros(emb_dim))
            if self.cond_embed is not None
            else None
        )

        self.conv_in = nn.Conv2d(in_channels, base_channels, 3, padding=1)
        self.down = nn.ModuleList()
        skip_channels, ch, res = [base_channels], base_channels, image_size
        for level, mult in enumerate(channel_mults):
            for _ in range(num_res_blocks):
                self.down.append(
                    _Stage(
                        ResBlock(ch, base_channels * mult, emb_dim, dropout),
                        res in attention_resolutions,
                        base_channels * mult,
                    )
                )
                ch = base_channels * mult
                skip_channels.append(ch)
            if level != len(channel_mults) - 1:
                self.down.append(
                    _Stage(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
                )  # downsample
                res //= 2
                skip_channels.append(ch)
        self.mid = nn.ModuleList(
            [
                ResBlock(ch, ch, emb_dim, dropout),
                AttentionBlock(ch),
                ResBlock(ch, ch, emb_dim, dropout),
            ]
        )
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mults))):
            for _ in range(num_res_blocks + 1):
                self.up.append(
                    _Stage(
                        ResBlock(
                            ch + skip_channels.pop(),
                            base_channels * mult,
                            emb_dim,
                            dropout,
                        ),
                        res in attention_resolutions,
                        base_channels * mult,
                        takes_skip=True,
                    )
                )
                ch = base_channels * mult
            if level != 0:
                self.up.append(_Stage(_Upsample(ch)))
                res *= 2
        self.norm_out = _norm(ch)
        self.conv_out = nn.Conv2d(ch, in_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)
        self.base_channels = base_channels

    def embed(
        self,
        t: Tensor,
        cond: Tensor | None = None,
        cond_mask: Tensor | None = None,
    ) -> Tensor:
        """Step embedding plus condition embedding (the null embedding where there is no condition): [B, 4 * base]."""
        emb = self.time_embed(timestep_embedding(t, self.base_channels))
        if self.cond_embed is None:
            if cond is not None:
                raise ValueError(
                    "this UNet was built without num_classes or cond_dim, so it takes no cond"
                )
            return emb
        B = t.shape[0]
        null = self.null_embed.expand(B, -1)
        if cond is None:
            return emb + null
        if self.num_classes is not None:
            if cond.dtype != torch.long or cond.ndim != 1:
                raise ValueError(
                    f"class conditioning needs integer labels [B], got {tuple(cond.shape)} {cond.dtype}"
                )
            c = self.cond_embed(cond)
        else:
            if cond.ndim != 2 or cond.shape[1] != self.cond_dim:
                raise ValueError(
                    f"vector conditioning needs cond [B, {self.cond_dim}], got {tuple(cond.shape)}"
                )
            c = self.cond_embed(cond.to(emb.dtype))
        if cond_mask is not None:
            c = torch.where(cond_mask[:, None], c, null)
        return emb + c

    def forward(
        self,
        x: Tensor,
        t: Tensor,
        cond: Tensor | None = None,
        cond_mask: Tensor | None = None,
    ) -> Tensor:
        """Predicted noise eps_theta(x_t, t, c) with the shape of ``x`` [B, C, H, W]."""
        emb = self.embed(t, cond, cond_mask)  # [B, 4 * base]
        h = self.conv_in(x)
        skips = [h]
        for stage in self.down:
            h = stage(h, emb)
            skips.append(h)
        h = self.mid[2](self.mid[1](self.mid[0](h, emb)), emb)
        for stage in self.up:
            h = stage(
                torch.cat([h, skips.pop()], dim=1) if stage.takes_skip else h,
                emb,
            )
        return self.conv_out(F.silu(self.norm_out(h)))


class _Stage(nn.Module):
    """One U-Net stage: a ResBlock (optionally followed by attention), or a resampling layer."""

    def __init__(
        self,
        layer: nn.Module,
        attention: bool = False,
        channels: int = 0,
        takes_skip: bool = False,
    ):
        super().__init__()
        self.layer, self.takes_skip = layer, takes_skip
        self.attn = AttentionBlock(channels) if attention else None

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        x = (
            self.layer(x, emb)
            if isinstance(self.layer, ResBlock)
            else self.layer(x)
        )
        return self.attn(x) if self.attn is not None else x


class _Upsample(nn.Module):
    """Nearest-neighbour doubling followed by a 3x3 convolution (Ho et al., 2020)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


def to_unit(x: Tensor) -> Tensor:
    """Map images from the model's [-1, 1] to [0, 1] for display and for the judge."""
    return ((x + 1) / 2).clamp(0, 1)


def from_unit(x: Tensor) -> Tensor:
    """Map images from [0, 1] to the [-1, 1] range diffusion and GAN models work in."""
    return x * 2 - 1
