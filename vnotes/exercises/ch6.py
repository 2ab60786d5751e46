"""Chapter 6 (generative models): the VAE's reparameterisation and KL, the VQ-VAE's nearest-codebook lookup
with its straight-through gradient, the GAN's two losses, the DDPM posterior step, classifier-free guidance,
the Fréchet distance between Gaussians, and the quizzes of pages 6a–6d."""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

import torch
import torch.nn.functional as F

from .core import (
    CheckResult,
    _as_tensor,
    _check,
    _choice,
    _compare,
    _number,
    _run,
    _Stop,
)

__all__ = [
    "check_vae_reparameterize",
    "check_vector_quantize",
    "autoencoders_quiz",
    "check_gan_losses",
    "gan_quiz",
    "check_ddpm_posterior",
    "check_guided_noise",
    "diffusion_quiz",
    "check_gaussian_frechet_distance",
    "yardstick_quiz",
]


def _run_case(fn: Callable, label: str, *args, **kwargs):
    """:func:`_run`, with the case named when the reader's function raises (a "not yet" stays as it is)."""
    try:
        return _run(fn, *args, **kwargs)
    except _Stop as stop:
        if str(stop).startswith("not yet"):
            raise
        raise _Stop(f"{stop} ({label})") from None


def _pair(out: Any, name: str, first: str, second: str) -> tuple[Any, Any]:
    """The reader's ``(first, second)`` result, or a one-line :class:`_Stop`."""
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        got = type(out).__name__ + (
            f" of length {len(out)}" if isinstance(out, (tuple, list)) else ""
        )
        raise _Stop(
            f"{name} should return two things ({first}, {second}), got {got}"
        )
    return out[0], out[1]


def _tensor(x: Any, what: str) -> torch.Tensor:
    """A tensor the reader returned, kept with its autograd graph."""
    if not isinstance(x, torch.Tensor):
        raise _Stop(f"{what} is a {type(x).__name__}, not a tensor")
    return x


def _scalar(x: Any, what: str) -> float:
    """One finite number: a float, an int or a tensor (or array) with one element."""
    if isinstance(x, bool):
        raise _Stop(f"{what} is a bool, not a number")
    if hasattr(x, "numel") and hasattr(x, "item"):
        if x.numel() != 1:
            raise _Stop(f"{what} has shape {tuple(x.shape)}, not one number")
        x = x.item()
    elif (
        hasattr(x, "size")
        and hasattr(x, "item")
        and not isinstance(x, (int, float))
    ):
        if x.size != 1:
            raise _Stop(f"{what} has {x.size} elements, not one number")
        x = x.item()
    if isinstance(x, complex):
        if abs(x.imag) > 1e-6 * max(1.0, abs(x.real)):
            raise _Stop(
                f"{what} is the complex number {x:.4g}, not a real one"
            )
        x = x.real
    if not isinstance(x, (int, float)):
        raise _Stop(f"{what} is a {type(x).__name__}, not a number")
    if not math.isfinite(x):
        raise _Stop(f"{what} is {x}, not a finite number")
    return float(x)


# ============================================================================ page 6a
def check_vae_reparameterize(vae_reparameterize: Callable) -> CheckResult:
    """Check ``vae_reparameterize(mu, logvar, eps=None) -> (z, kl)`` (Kingma & Welling, 2013): the
    reparameterised sample ``z = mu + sigma * eps`` with ``sigma = exp(logvar / 2)`` (fresh standard
    normal noise when ``eps`` is None) and the KL term of the VAE's loss, KL(N(mu, sigma^2) || N(0, I))
    summed over the latent dimensions and averaged over the batch, as ``vnotes.generative.autoencoders.
    vae_loss`` does: a scalar.

    The KL is compared with ``torch.distributions.kl_divergence`` of ``Normal(mu, exp(logvar / 2))``
    against ``Normal(0, 1)``; ``z`` with the given noise exactly; without noise, the mean and spread of
    many draws, the draws' independence across the batch and between calls, and the gradient that
    reaches ``mu`` and ``logvar`` (what the trick is for). Cases: a random batch, a batch of one, a
    posterior equal to the prior.
    """

    def body() -> str:
        from torch.distributions import Normal, kl_divergence

        g = torch.Generator().manual_seed(60)
        cases = [
            ("a batch of 6 with 4 latent dimensions", 6, 4),
            ("a batch of one with 3 latent dimensions", 1, 3),
            ("a posterior equal to the prior (mu = 0, logvar = 0)", 5, 2),
        ]
        for label, B, D in cases:
            if "prior" in label:
                mu = torch.zeros(B, D, dtype=torch.float64)
                logvar = torch.zeros(B, D, dtype=torch.float64)
            else:
                mu = 1.5 * torch.randn(B, D, generator=g, dtype=torch.float64)
                logvar = (
                    3 * torch.rand(B, D, generator=g, dtype=torch.float64) - 2
                )
            eps = torch.randn(B, D, generator=g, dtype=torch.float64)
            mu_in = mu.clone().requires_grad_(True)
            logvar_in = logvar.clone().requires_grad_(True)
            out = _run_case(
                vae_reparameterize, label, mu_in, logvar_in, eps.clone()
            )
            z, kl = _pair(out, "vae_reparameterize", "z", "kl")
            sigma = (0.5 * logvar).exp()
            _compare(
                _tensor(z, f"z ({label})").detach(),
                mu + sigma * eps,
                f"z with the given eps ({label})",
                rtol=1e-6,
                atol=1e-9,
            )
            want_kl = (
                kl_divergence(Normal(mu, sigma), Normal(0.0, 1.0))
                .sum(-1)
                .mean()
            )
            kl_t = kl.detach() if isinstance(kl, torch.Tensor) else kl
            _compare(
                kl_t,
                want_kl,
                f"the KL ({label}; one number, the batch's mean of the per-example KL)",
                rtol=1e-6,
                atol=1e-9,
            )
            # the gradient of sum(w * z): w to mu, w * sigma * eps / 2 to logvar
            if not z.requires_grad:
                raise _Stop(
                    f"z carries no gradient back to mu and logvar ({label}); the sample must stay "
                    "differentiable"
                )
            w = torch.randn(B, D, generator=g, dtype=torch.float64)
            grads = torch.autograd.grad(
                (z * w).sum(), (mu_in, logvar_in), allow_unused=True
            )
            for name, grad, want in (
                ("mu", grads[0], w),
                ("logvar", grads[1], w * 0.5 * sigma * eps),
            ):
                if grad is None:
                    raise _Stop(
                        f"no gradient reaches {name} through z ({label})"
                    )
                _compare(
                    grad,
                    want,
                    f"the gradient of z with respect to {name} ({label})",
                    rtol=1e-6,
                    atol=1e-9,
                )

        # without eps: fresh noise, one draw per element, different on every call
        label = "eps=None, 20,000 draws of one posterior per latent dimension"
        mu = torch.tensor([[-2.0, 0.5, 3.0]], dtype=torch.float64).expand(
            20000, 3
        )
        logvar = torch.tensor([[-2.0, 0.0, 1.5]], dtype=torch.float64).expand(
            20000, 3
        )
        sigma = (0.5 * logvar[0]).exp()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(61)
            mu_in = mu.clone().requires_grad_(True)
            z, _ = _pair(
                _run_case(vae_reparameterize, label, mu_in, logvar.clone()),
                "vae_reparameterize",
                "z",
                "kl",
            )
            z = _tensor(z, f"z ({label})")
            z2, _ = _pair(
                _run_case(
                    vae_reparameterize, label, mu.clone(), logvar.clone()
                ),
                "vae_reparameterize",
                "z",
                "kl",
            )
        if tuple(z.shape) != tuple(mu.shape):
            raise _Stop(
                f"z has shape {tuple(z.shape)}, expected {tuple(mu.shape)} ({label})"
            )
        zd = z.detach().to(torch.float64)
        if not torch.isfinite(zd).all():
            raise _Stop(f"z has non-finite values ({label})")
        mean, std = zd.mean(0), zd.std(0)
        for j in range(3):
            if abs(mean[j] - mu[0, j]) > 5 * sigma[j] / math.sqrt(20000):
                raise _Stop(
                    f"the draws of dimension {j} average {mean[j]:.3f}, but mu is {mu[0, j]:.3f} ({label})"
                )
            if abs(std[j] / sigma[j] - 1) > 0.03:
                raise _Stop(
                    f"the draws of dimension {j} spread with std {std[j]:.3f}; exp(logvar / 2) is "
                    f"{sigma[j]:.3f} ({label})"
                )
        if torch.equal(
            _tensor(z2, f"z ({label})").detach().to(torch.float64), zd
        ):
            raise _Stop(
                f"two calls without eps gave the same z: the noise must be fresh ({label})"
            )
        if not z.requires_grad:
            raise _Stop(
                f"z carries no gradient back to mu ({label}); draw eps, then build z from mu and logvar"
            )
        (grad,) = torch.autograd.grad(
            z[:, 0].sum(), (mu_in,), allow_unused=True
        )
        if grad is None or not torch.allclose(
            grad[:, 0], torch.ones(20000, dtype=torch.float64)
        ):
            raise _Stop(
                f"the gradient of z with respect to mu is not 1 ({label}); the sample must be "
                "mu plus something, not drawn around mu"
            )
        return (
            "z and the KL match torch.distributions and the closed form; fresh draws have the right mean "
            "and spread, and the gradient reaches mu and logvar"
        )

    return _check("vae_reparameterize", vae_reparameterize, body)


def check_vector_quantize(vector_quantize: Callable) -> CheckResult:
    """Check ``vector_quantize(z_e, codebook) -> (z_q, codes)`` (van den Oord et al., 2017): for each row of
    ``z_e`` [N, D] the index of the nearest row of ``codebook`` [K, D] in Euclidean distance (``codes``,
    [N] integers) and ``z_q`` [N, D], whose values are those codebook rows and whose gradient is the
    straight-through estimator: the gradient of ``z_q`` reaches ``z_e`` unchanged, and none reaches the
    codebook through ``z_q`` (the codebook loss moves it), as ``vnotes.generative.autoencoders.
    VectorQuantizer`` does.

    Compared with ``torch.cdist(...).argmin`` and with the gradient of ``sum(w * z_q)``. Cases: random
    vectors, codebook entries of very different lengths, a vector equal to an entry, one entry, one vector.
    """

    def body() -> str:
        g = torch.Generator().manual_seed(62)

        def rand(*shape):
            return torch.randn(*shape, generator=g, dtype=torch.float64)

        varied = (
            rand(6, 3)
            * torch.tensor(
                [0.1, 0.3, 1.0, 3.0, 6.0, 10.0], dtype=torch.float64
            )[:, None]
        )
        exact = rand(5, 4)
        cases = [
            (
                "12 random vectors, 8 entries of dimension 4",
                rand(12, 4),
                rand(8, 4),
            ),
            ("entries of very different lengths", rand(20, 3) * 2, varied),
            (
                "a vector equal to an entry",
                torch.cat([exact[2:3], rand(3, 4)]),
                exact,
            ),
            ("a codebook of one entry", rand(4, 2), rand(1, 2)),
            ("one vector", rand(1, 5), rand(7, 5)),
        ]
        for label, z_e, codebook in cases:
            want_codes = torch.cdist(z_e, codebook).argmin(1)
            z_in = z_e.clone().requires_grad_(True)
            book_in = codebook.clone().requires_grad_(True)
            out = _run_case(vector_quantize, label, z_in, book_in)
            z_q, codes = _pair(out, "vector_quantize", "z_q", "codes")
            codes = _tensor(codes, f"codes ({label})")
            if tuple(codes.shape) != tuple(want_codes.shape):
                raise _Stop(
                    f"codes has shape {tuple(codes.shape)}, expected {tuple(want_codes.shape)} ({label})"
                )
            if codes.is_floating_point() and not torch.equal(
                codes, codes.round()
            ):
                raise _Stop(f"codes are not whole numbers ({label})")
            codes = codes.detach().long()
            wrong = (codes != want_codes).nonzero().flatten()
            if wrong.numel():
                i = int(wrong[0])
                dist = torch.cdist(z_e[i : i + 1], codebook)[0]
                got = int(codes[i])
                got_d = (
                    f"{dist[got]:.3f}"
                    if 0 <= got < len(dist)
                    else "out of range"
                )
                raise _Stop(
                    f"vector {i} gets entry {got} (distance {got_d}), but entry {int(want_codes[i])} is "
                    f"nearer (distance {dist[want_codes[i]]:.3f}) ({label})"
                )
            z_q = _tensor(z_q, f"z_q ({label})")
            _compare(
                z_q.detach(),
                codebook[want_codes],
                f"z_q ({label})",
                rtol=1e-9,
                atol=1e-9,
            )
            if not z_q.requires_grad:
                raise _Stop(
                    f"no gradient flows back from z_q ({label}); the decoder's gradient must reach the encoder"
                )
            w = rand(*z_e.shape)
            grad_z, grad_book = torch.autograd.grad(
                (z_q * w).sum(), (z_in, book_in), allow_unused=True
            )
            if grad_z is None:
                raise _Stop(
                    f"no gradient reaches z_e from z_q ({label}); the decoder's gradient must reach the encoder"
                )
            if not grad_z.abs().sum():
                raise _Stop(
                    f"the gradient of z_q reaches z_e as zero ({label}); it should pass through unchanged"
                )
            _compare(
                grad_z,
                w,
                f"the gradient that reaches z_e ({label})",
                rtol=1e-9,
                atol=1e-12,
            )
            if grad_book is not None and grad_book.abs().max() > 0:
                raise _Stop(
                    f"the gradient of z_q also reaches the codebook ({label}); only z_e should receive it"
                )
        return (
            "the nearest entries match torch.cdist, z_q holds them, and its gradient reaches z_e unchanged "
            "(and not the codebook)"
        )

    return _check("vector_quantize", vector_quantize, body)


def autoencoders_quiz(
    *,
    ae_mse: float,
    vae_mse: float,
    kl_per_dim: torch.Tensor,
    perplexity: float,
    num_codes: int,
) -> list[dict]:
    """The quiz of page 6a (``06a_autoencoders``), built from what the page measured: the AE's and the VAE's
    test reconstruction MSEs, the VAE's KL per latent dimension (``kl_per_dim`` [D], averaged over the test
    digits) and the VQ-VAE's codebook perplexity with ``num_codes`` entries."""
    kl_per_dim = torch.as_tensor(kl_per_dim).flatten()
    active = int((kl_per_dim > 0.1).sum())
    better = "the AE" if ae_mse < vae_mse else "the VAE"
    used = round(float(perplexity))
    return [
        _choice(
            "The VAE's encoder outputs mu and logvar = log σ². In the reparameterisation z = mu + σ·ε, "
            "which expression is σ?",
            ["exp(logvar)", "exp(logvar / 2)", "sqrt(logvar)", "logvar / 2"],
            "exp(logvar / 2)",
            "Right: σ = (σ²)^(1/2) = exp(log σ² / 2); exp(logvar) would be the variance.",
        ),
        _number(
            f"Of the VAE's {len(kl_per_dim)} latent dimensions, how many carry information (a KL above "
            "0.1 nats per image, the bar chart of section 2)?",
            active,
            f"Right: {active}; the others' posteriors are the prior, so they cost nothing and say nothing.",
        ),
        _choice(
            "Which model reconstructed the test digits with the lower MSE?",
            ["the AE", "the VAE"],
            better,
            f"Right: AE {ae_mse:.4f}, VAE {vae_mse:.4f}. The VAE's codes are noisy in training and its "
            "KL charges for information.",
        ),
        _number(
            f"The VQ-VAE's codebook has {num_codes} entries. About how many of them are in effective use "
            "on the test digits (its perplexity, rounded to a whole number)?",
            used,
            f"Right: perplexity {perplexity:.2f} of K = {num_codes}.",
        ),
        _choice(
            "Why does the VQ-VAE copy the decoder's gradient straight through to the encoder?",
            [
                "choosing the nearest codebook entry has no useful gradient",
                "the codebook would otherwise grow too large",
                "the decoder's gradient is too noisy",
            ],
            "choosing the nearest codebook entry has no useful gradient",
            "Right: an argmin is piecewise constant, so its gradient is zero almost everywhere; "
            "z_q = z_e + sg[z_q − z_e] uses z_q forward and the identity backward.",
        ),
    ]


# ============================================================================ page 6b
def check_gan_losses(gan_losses: Callable) -> CheckResult:
    """Check ``gan_losses(real_logits, fake_logits) -> (d_loss, g_loss)``: the discriminator's loss (real
    images labelled 1, fakes 0, the two binary cross-entropies each averaged over its batch and added) and
    the generator's non-saturating loss −E log D(G(z)) (fakes labelled 1), from the discriminator's logits,
    as ``vnotes.generative.gan.AdversarialStep`` computes them; against ``F.binary_cross_entropy_with_logits``.

    Cases: random logits, a batch of one, and a discriminator that rejects every fake with certainty
    (logits ±200), where the generator's loss must stay finite and large.
    """

    def body() -> str:
        g = torch.Generator().manual_seed(63)
        cases = [
            (
                "random logits, batches of 8",
                2 * torch.randn(8, generator=g) + 1,
                2 * torch.randn(8, generator=g) - 1,
            ),
            ("a batch of one", torch.tensor([0.7]), torch.tensor([-1.3])),
            (
                "a discriminator certain of every image (logits ±200)",
                torch.full((4,), 200.0),
                torch.full((4,), -200.0),
            ),
            (
                "a fooled discriminator (fakes at logit +3)",
                torch.randn(5, generator=g),
                torch.full((5,), 3.0) + 0.1 * torch.randn(5, generator=g),
            ),
        ]
        for label, real, fake in cases:
            bce = F.binary_cross_entropy_with_logits
            want_d = bce(real, torch.ones_like(real)) + bce(
                fake, torch.zeros_like(fake)
            )
            want_g = bce(fake, torch.ones_like(fake))
            out = _run_case(gan_losses, label, real.clone(), fake.clone())
            d_loss, g_loss = _pair(out, "gan_losses", "d_loss", "g_loss")
            for what, got, want in (
                ("the discriminator's loss", d_loss, want_d),
                ("the generator's loss", g_loss, want_g),
            ):
                value = _scalar(got, f"{what} ({label})")
                if not math.isclose(
                    value, want.item(), rel_tol=1e-4, abs_tol=1e-5
                ):
                    raise _Stop(
                        f"{what} is {value:.6g} ({label}); the reference gives {want.item():.6g}"
                    )
        return "both losses match binary cross-entropy with logits, also when the discriminator is certain"

    return _check("gan_losses", gan_losses, body)


def gan_quiz(
    *,
    class_histogram: Sequence[int],
    sample_distance: float,
    real_distance: float,
    d_train: float,
    d_val: float,
) -> list[dict]:
    """The quiz of page 6b (``06b_gan``), from the final generator and discriminator: the judge's histogram of
    predicted classes of the samples, the median distance of samples and of real test digits to their
    nearest training digit, and the trained discriminator's mean belief 'real' on training and validation
    digits."""
    classes = sum(1 for c in class_histogram if c > 0)
    closer = (
        "closer than real test digits"
        if sample_distance < real_distance
        else "farther than real test digits"
    )
    gap = d_train - d_val
    overfit = (
        "the training digits, by more than 0.1"
        if gap > 0.1
        else "about the same for both (within 0.1)"
    )
    return [
        _choice(
            "Early in training the discriminator rejects the fakes: D(G(z)) is close to 0. Which generator "
            "loss still gives the generator a strong gradient there?",
            [
                "−log D(G(z)), the non-saturating loss",
                "log(1 − D(G(z))), the minimax loss",
            ],
            "−log D(G(z)), the non-saturating loss",
            "Right: with respect to the logit a, log(1 − σ(a)) has gradient −σ(a), which vanishes as D(G(z)) → 0, "
            "while −log σ(a) has −(1 − σ(a)), close to −1 there.",
        ),
        _number(
            f"How many of the ten digit classes did the judge find among the final generator's "
            f"{sum(class_histogram)} samples?",
            classes,
            f"Right: {classes}; the histogram is {list(class_histogram)}.",
        ),
        _choice(
            "In pixel distance, the generator's samples lie … their nearest training digit",
            ["closer than real test digits", "farther than real test digits"],
            closer,
            f"Right: median {sample_distance:.2f} for the samples, {real_distance:.2f} for real test digits.",
        ),
        _choice(
            "The trained discriminator's mean probability 'real' is higher for …",
            [
                "the training digits, by more than 0.1",
                "about the same for both (within 0.1)",
            ],
            overfit,
            f"Right: {d_train:.2f} on the training digits, {d_val:.2f} on the validation digits.",
        ),
    ]


# ============================================================================ page 6c
def _posterior_reference(betas, x0, x_t, t):
    """q(x_{t-1} | x_t, x_0) in closed form (Ho et al., 2020, eq. 6-7), 0-based t, in float64."""
    betas = betas.double()
    alphas = 1 - betas
    abar = torch.cumprod(alphas, 0)
    abar_prev = torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
    shape = (-1,) + (1,) * (x0.ndim - 1)
    b, a, ab, abp = (
        v[t].view(shape) for v in (betas, alphas, abar, abar_prev)
    )
    mean = (
        b * abp.sqrt() / (1 - ab) * x0 + (1 - abp) * a.sqrt() / (1 - ab) * x_t
    )
    var = b * (1 - abp) / (1 - ab)
    return mean, var


def check_ddpm_posterior(ddpm_posterior: Callable) -> CheckResult:
    """Check ``ddpm_posterior(x0, x_t, t, betas) -> (mean, var)``: the mean and variance of the forward
    process's posterior q(x_{t-1} | x_t, x_0) (Ho et al., 2020, eq. 6-7) for images ``x0``, ``x_t``
    [B, C, H, W], 0-based steps ``t`` [B] (``t = 0`` is the first step, whose posterior is x_0 itself) and
    the schedule ``betas`` [T]; ``var`` may have any shape that broadcasts to the images' (the book's
    ``GaussianDiffusion.q_posterior`` returns [B, 1, 1, 1]). Compared with the closed form in float64.

    Cases: the linear schedule of T = 1000 steps at its first, middle and last step, a batch with a
    different step per image, the cosine schedule of T = 50, and T = 1.
    """

    def body() -> str:
        from vnotes.generative.diffusion import (
            cosine_beta_schedule,
            linear_beta_schedule,
        )

        g = torch.Generator().manual_seed(64)

        def rand(*shape):
            return torch.randn(*shape, generator=g, dtype=torch.float64)

        linear, cosine = linear_beta_schedule(1000), cosine_beta_schedule(50)
        cases = [
            (
                "linear schedule, T = 1000, t = 500",
                linear,
                torch.tensor([500, 500]),
            ),
            (
                "linear schedule, the first step t = 0",
                linear,
                torch.tensor([0, 0, 0]),
            ),
            (
                "linear schedule, the last step t = 999",
                linear,
                torch.tensor([999]),
            ),
            ("linear schedule, t = 1", linear, torch.tensor([1, 1])),
            (
                "linear schedule, a different t per image",
                linear,
                torch.tensor([3, 250, 998, 40]),
            ),
            ("cosine schedule, T = 50", cosine, torch.tensor([0, 10, 25, 49])),
            (
                "a one-step process, T = 1",
                torch.tensor([0.3], dtype=torch.float64),
                torch.tensor([0]),
            ),
        ]
        for label, betas, t in cases:
            B = len(t)
            x0 = rand(B, 1, 3, 3).clamp(-1, 1)
            x_t = rand(B, 1, 3, 3)
            want_mean, want_var = _posterior_reference(betas, x0, x_t, t)
            out = _run_case(
                ddpm_posterior,
                label,
                x0.clone(),
                x_t.clone(),
                t.clone(),
                betas.clone(),
            )
            mean, var = _pair(out, "ddpm_posterior", "mean", "var")
            _compare(
                mean,
                want_mean,
                f"the posterior mean ({label})",
                rtol=1e-6,
                atol=1e-9,
            )
            var = _as_tensor(
                var.detach() if isinstance(var, torch.Tensor) else var,
                f"the posterior variance ({label})",
                want_var,
            )
            try:
                var = torch.broadcast_to(var, x0.shape)
            except RuntimeError:
                raise _Stop(
                    f"the variance has shape {tuple(var.shape)}, which does not broadcast to the images' "
                    f"{tuple(x0.shape)} ({label})"
                ) from None
            _compare(
                var,
                want_var.expand_as(x0),
                f"the posterior variance ({label})",
                rtol=1e-6,
                atol=1e-12,
            )
        return "the mean and the variance match the closed form on both schedules, at the first and last steps"

    return _check("ddpm_posterior", ddpm_posterior, body)


def check_guided_noise(guided_noise: Callable) -> CheckResult:
    """Check ``guided_noise(eps_cond, eps_uncond, w) -> eps``: classifier-free guidance (Ho & Salimans, 2022,
    eq. 6) in the book's convention, ``w = 0`` the plain conditional prediction and larger ``w`` moving away
    from the unconditional one (``GaussianDiffusion.predict_noise``). Cases: w = 0, 1, 4 and 0.5, on a batch
    of noise predictions, and predictions that agree (guidance then changes nothing).
    """

    def body() -> str:
        g = torch.Generator().manual_seed(65)
        c = torch.randn(3, 1, 4, 4, generator=g, dtype=torch.float64)
        u = torch.randn(3, 1, 4, 4, generator=g, dtype=torch.float64)
        cases = [
            ("w = 0", c, u, 0.0),
            ("w = 1", c, u, 1.0),
            ("w = 4", c, u, 4.0),
            ("w = 0.5", c, u, 0.5),
            ("w = 3, both predictions equal", c, c.clone(), 3.0),
        ]
        for label, cond, uncond, w in cases:
            want = (1 + w) * cond - w * uncond
            got = _run_case(
                guided_noise, label, cond.clone(), uncond.clone(), w
            )
            _compare(
                got, want, f"the guided noise ({label})", rtol=1e-9, atol=1e-12
            )
        return "matches the guided prediction for w = 0, 0.5, 1 and 4"

    return _check("guided_noise", guided_noise, body)


def diffusion_quiz(
    *,
    timesteps: int,
    ddim_steps: int,
    guidance_scales: Sequence[float],
    conditional_accuracy: Sequence[float],
) -> list[dict]:
    """The quiz of page 6c (``06c_diffusion``): the number of steps ``timesteps`` of the process, the DDIM
    sampler's ``ddim_steps``, and the conditional accuracy the page measured at each guidance scale."""
    scales = list(guidance_scales)
    acc = list(conditional_accuracy)
    if len(scales) != len(acc) or len(scales) < 2:
        raise ValueError(
            "need the conditional accuracy at two guidance scales or more"
        )
    rises = acc[-1] > acc[0]
    return [
        _choice(
            "With guidance scale w = 0, the guided noise prediction (1 + w)·ε(x_t, c) − w·ε(x_t, ∅) equals …",
            [
                "the conditional prediction",
                "the unconditional prediction",
                "the average of the two",
            ],
            "the conditional prediction",
            "Right: w = 0 is the plain class-conditional model; w > 0 extrapolates away from the "
            "unconditional prediction.",
        ),
        _number(
            "How many network evaluations does the ancestral DDPM sampler of this page need per sample?",
            int(timesteps),
            f"Right: one per step, T = {timesteps}.",
        ),
        _number(
            "How many times fewer network evaluations does the DDIM sampler of the yardstick need than "
            "ancestral sampling (rounded to a whole number)?",
            round(timesteps / ddim_steps),
            f"Right: {timesteps} / {ddim_steps} = {timesteps / ddim_steps:.1f}.",
        ),
        _choice(
            f"From w = {scales[0]:g} to w = {scales[-1]:g}, the share of samples the judge files under the "
            "asked class …",
            ["rises", "does not rise"],
            "rises" if rises else "does not rise",
            f"Right: {acc[0]:.0%} at w = {scales[0]:g}, {acc[-1]:.0%} at w = {scales[-1]:g}.",
        ),
    ]


# ============================================================================ page 6d
def _frechet_reference(mu1, s1, mu2, s2) -> float:
    import numpy as np
    from scipy.linalg import sqrtm

    s1, s2 = s1.numpy(), s2.numpy()
    root = sqrtm(s1 @ s2)
    root = root.real if np.iscomplexobj(root) else root
    return float(((mu1 - mu2) ** 2).sum()) + float(
        np.trace(s1 + s2 - 2 * root)
    )


def check_gaussian_frechet_distance(
    gaussian_frechet_distance: Callable,
) -> CheckResult:
    """Check ``gaussian_frechet_distance(mu1, sigma1, mu2, sigma2) -> float``: the squared Fréchet (2-Wasserstein)
    distance between N(mu1, sigma1) and N(mu2, sigma2), ||mu1 − mu2||² + Tr(sigma1 + sigma2 − 2 (sigma1 sigma2)^(1/2)),
    FID's formula (the book's ``vnotes.generative.judge.frechet_distance``); against the closed form with
    ``scipy.linalg.sqrtm``. Cases: random full covariances, only the means differ, only the covariances
    differ, equal Gaussians (distance 0), one dimension, a singular covariance.
    """

    def body() -> str:
        g = torch.Generator().manual_seed(66)

        def spd(n, rank=None):
            a = torch.randn(n, rank or n, generator=g, dtype=torch.float64)
            return a @ a.T / (rank or n) + (0 if rank else 0.1) * torch.eye(
                n, dtype=torch.float64
            )

        def vec(n, scale=1.0):
            return scale * torch.randn(n, generator=g, dtype=torch.float64)

        s_a, s_b = spd(5), spd(5)
        m = vec(4)
        cases = [
            ("random Gaussians in 5 dimensions", vec(5), s_a, vec(5), s_b),
            ("only the covariances differ", m, spd(4), m.clone(), spd(4)),
            (
                "only the means differ",
                vec(3),
                s_a[:3, :3],
                vec(3, 2.0),
                s_a[:3, :3].clone(),
            ),
            (
                "two equal Gaussians",
                m,
                s_b[:4, :4],
                m.clone(),
                s_b[:4, :4].clone(),
            ),
            (
                "one dimension",
                torch.tensor([0.5], dtype=torch.float64),
                torch.tensor([[4.0]], dtype=torch.float64),
                torch.tensor([-1.0], dtype=torch.float64),
                torch.tensor([[0.25]], dtype=torch.float64),
            ),
            (
                "a singular covariance (rank 2 in 4 dimensions)",
                vec(4),
                spd(4, rank=2),
                vec(4),
                spd(4),
            ),
        ]
        for label, mu1, s1, mu2, s2 in cases:
            want = _frechet_reference(mu1, s1, mu2, s2)
            got = _scalar(
                _run_case(
                    gaussian_frechet_distance,
                    label,
                    mu1.clone(),
                    s1.clone(),
                    mu2.clone(),
                    s2.clone(),
                ),
                f"the distance ({label})",
            )
            if not math.isclose(got, want, rel_tol=1e-5, abs_tol=1e-6):
                raise _Stop(
                    f"the distance is {got:.6g} ({label}); the closed form gives {want:.6g}"
                )
        return "matches the closed form with scipy's sqrtm on full, equal, one-dimensional and singular covariances"

    return _check("gaussian_frechet_distance", gaussian_frechet_distance, body)


def yardstick_quiz(
    *,
    frechet_distances: Mapping[str, float],
    sampling_ms: Mapping[str, float],
    real_floor: float,
) -> list[dict]:
    """The quiz of page 6d (``06d_yardstick``): each model's Fréchet distance to the real test digits and its
    sampling time in ms per image (both keyed by the model's name as the page prints it), and the
    real-vs-real floor."""
    names = list(frechet_distances)
    if set(names) != set(sampling_ms) or len(names) < 2:
        raise ValueError(
            "frechet_distances and sampling_ms must name the same models, two or more"
        )
    closest = min(names, key=lambda n: frechet_distances[n])
    slowest = max(names, key=lambda n: sampling_ms[n])
    above = sum(1 for n in names if frechet_distances[n] > real_floor)
    return [
        _choice(
            "Besides the squared distance between the means, what does the Fréchet distance between two "
            "Gaussians add?",
            [
                "a trace term that compares the two covariances",
                "nothing: it only compares the means",
                "the KL divergence between the two Gaussians",
            ],
            "a trace term that compares the two covariances",
            "Right: Tr(Σ₁ + Σ₂ − 2(Σ₁Σ₂)^(1/2)), zero exactly when the covariances are equal.",
        ),
        _choice(
            "Which model's samples are closest to the real test digits in the judge's feature space?",
            names,
            closest,
            f"Right: {closest}, at a Fréchet distance of {frechet_distances[closest]:.2f} "
            f"(real-vs-real floor {real_floor:.2f}).",
        ),
        _choice(
            "Which model was the slowest to sample?",
            names,
            slowest,
            f"Right: {slowest}, {sampling_ms[slowest]:.3g} ms per image.",
        ),
        _number(
            f"How many of the {len(names)} models lie above the real-vs-real floor of the Fréchet distance?",
            above,
            f"Right: {above}; the floor ({real_floor:.2f}) is what two finite sets of real digits already differ by.",
        ),
    ]
