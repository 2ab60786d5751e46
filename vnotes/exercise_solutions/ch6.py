"""Chapter 6 (generative models): reference solutions."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "vae_reparameterize",
    "vector_quantize",
    "gan_losses",
    "ddpm_posterior",
    "guided_noise",
    "gaussian_frechet_distance",
]


def vae_reparameterize(mu, logvar, eps=None):
    """z = mu + sigma * eps with sigma = exp(logvar / 2), and the KL of
    N(mu, sigma^2) from N(0, I): summed over the latent dimensions,
    averaged over the batch (Kingma & Welling, 2013, appendix B).

    Chapter 6a; the book's versions are ``reparameterize`` and
    ``gaussian_kl`` in ``vnotes.generative.autoencoders``.
    """
    if eps is None:
        eps = torch.randn_like(mu)  # fresh noise, one draw per element
    sigma = torch.exp(0.5 * logvar)  # the standard deviation, not the variance
    z = mu + sigma * eps  # differentiable in mu and logvar
    # -KL = 1/2 sum_j (1 + log sigma_j^2 - mu_j^2 - sigma_j^2)
    kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(-1)
    return z, kl.mean()


def vector_quantize(z_e, codebook):
    """Nearest codebook entry per row of z_e, with the straight-through
    gradient (van den Oord et al., 2017).

    Chapter 6a; the book's version is
    ``vnotes.generative.autoencoders.VectorQuantizer``.
    """
    # ||z - e||^2 = ||z||^2 - 2 z.e + ||e||^2, for every pair: [N, K]
    dist = (
        z_e.pow(2).sum(1, keepdim=True)
        - 2 * z_e @ codebook.T
        + codebook.pow(2).sum(1)[None]
    )
    codes = dist.argmin(1)  # the nearest entry: the smallest distance
    z_q = codebook[codes]
    # forward: z_q; backward: the identity to z_e, nothing to the codebook
    z_q = z_e + (z_q - z_e).detach()
    return z_q, codes


def gan_losses(real_logits, fake_logits):
    """The discriminator's loss (real -> 1, fake -> 0) and the generator's
    non-saturating loss -log D(G(z)) (fake -> 1), from logits
    (Goodfellow et al., 2014).

    Chapter 6b; the book's version is ``vnotes.generative.gan.AdversarialStep``.
    """
    bce = F.binary_cross_entropy_with_logits  # stable: never log(0)
    d_loss = bce(real_logits, torch.ones_like(real_logits)) + bce(
        fake_logits, torch.zeros_like(fake_logits)
    )
    g_loss = bce(fake_logits, torch.ones_like(fake_logits))
    return d_loss, g_loss


def ddpm_posterior(x0, x_t, t, betas):
    """Mean and variance of q(x_{t-1} | x_t, x_0) (Ho et al., 2020, eq. 6-7),
    0-based steps t.

    Chapter 6c; the book's version is
    ``vnotes.generative.diffusion.GaussianDiffusion.q_posterior``.
    """
    alphas = 1 - betas
    abar = torch.cumprod(alphas, 0)
    # abar before step 0 is 1 (no noise yet), not abar[-1]
    abar_prev = torch.cat([torch.ones_like(abar[:1]), abar[:-1]])
    shape = (-1,) + (1,) * (x0.ndim - 1)  # [B] -> [B, 1, 1, 1]
    b, a = betas[t].view(shape), alphas[t].view(shape)
    ab, abp = abar[t].view(shape), abar_prev[t].view(shape)
    mean = (
        b * abp.sqrt() / (1 - ab) * x0 + (1 - abp) * a.sqrt() / (1 - ab) * x_t
    )
    var = b * (1 - abp) / (1 - ab)  # beta tilde: smaller than beta_t
    return mean, var


def guided_noise(eps_cond, eps_uncond, w):
    """Classifier-free guidance (Ho & Salimans, 2022, eq. 6): w = 0 is the
    conditional prediction.

    Chapter 6c; the book's version is
    ``vnotes.generative.diffusion.GaussianDiffusion.predict_noise``.
    """
    return (1 + w) * eps_cond - w * eps_uncond


def gaussian_frechet_distance(mu1, sigma1, mu2, sigma2):
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)), the squared Frechet
    distance of two Gaussians (Dowson & Landau, 1982), as FID uses it.

    Chapter 6d; the book's version is ``vnotes.generative.judge.frechet_distance``.
    """

    def sqrtm_psd(a):  # a symmetric PSD matrix's square root
        vals, vecs = torch.linalg.eigh(a)
        return (vecs * vals.clamp(min=0).sqrt()) @ vecs.T

    # Tr (S1 S2)^(1/2) = Tr (S1^(1/2) S2 S1^(1/2))^(1/2), a symmetric argument
    root1 = sqrtm_psd(sigma1)
    middle = root1 @ sigma2 @ root1
    trace_sqrt = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp(min=0)
    trace_sqrt = trace_sqrt.sqrt().sum()
    return float(
        ((mu1 - mu2) ** 2).sum()
        + torch.trace(sigma1)
        + torch.trace(sigma2)
        - 2 * trace_sqrt
    )
