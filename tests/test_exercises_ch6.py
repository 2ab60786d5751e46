"""Chapter 6's exercises keep their promises (vnotes/exercises/ch6.py): the reference solution passes its
check, the untouched stub fails with a "not yet" line, plausible mistakes fail with a one-line message,
quiz answer keys follow the numbers a page passes in, and the pages hold their exercises."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.linalg import sqrtm
from torch.distributions import Normal

from vnotes import exercise_solutions as sol
from vnotes import exercises as ex


# ---------------------------------------------------------------- plausible mistakes, per exercise
def _kl(mu, logvar):
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp())  # [B, D]


def vae_sigma_is_exp_logvar(mu, logvar, eps=None):
    eps = torch.randn_like(mu) if eps is None else eps
    return mu + torch.exp(logvar) * eps, _kl(mu, logvar).sum(-1).mean()


def vae_kl_wrong_sign(mu, logvar, eps=None):
    z, kl = sol.vae_reparameterize(mu, logvar, eps)
    return z, -kl


def vae_kl_summed_over_batch(mu, logvar, eps=None):
    z, _ = sol.vae_reparameterize(mu, logvar, eps)
    return z, _kl(mu, logvar).sum()


def vae_kl_averaged_over_dims(mu, logvar, eps=None):
    z, _ = sol.vae_reparameterize(mu, logvar, eps)
    return z, _kl(mu, logvar).mean()


def vae_kl_per_example(mu, logvar, eps=None):
    z, _ = sol.vae_reparameterize(mu, logvar, eps)
    return z, _kl(mu, logvar).sum(-1)


def vae_kl_without_half(mu, logvar, eps=None):
    z, _ = sol.vae_reparameterize(mu, logvar, eps)
    return z, 2 * _kl(mu, logvar).sum(-1).mean()


def vae_kl_with_sigma_for_variance(mu, logvar, eps=None):
    z, _ = sol.vae_reparameterize(mu, logvar, eps)
    kl = -0.5 * (1 + logvar - mu.pow(2) - (0.5 * logvar).exp())
    return z, kl.sum(-1).mean()


def vae_ignores_given_eps(mu, logvar, eps=None):
    return sol.vae_reparameterize(mu, logvar, None)


def vae_samples_with_torch_normal(mu, logvar, eps=None):
    # torch.normal draws around mu, but passes no gradient back to mu or logvar
    if eps is not None:
        return sol.vae_reparameterize(mu, logvar, eps)
    z = torch.normal(mu, (0.5 * logvar).exp())
    return z, _kl(mu, logvar).sum(-1).mean()


def vae_samples_with_distribution(mu, logvar, eps=None):
    if eps is not None:
        z = mu + (0.5 * logvar).exp() * eps
    else:
        z = Normal(mu, (0.5 * logvar).exp()).sample()  # no gradient at all
    return z, _kl(mu, logvar).sum(-1).mean()


def vae_one_noise_for_the_batch(mu, logvar, eps=None):
    if eps is None:
        eps = torch.randn(
            mu.shape[-1], dtype=mu.dtype
        )  # shared by every example
    return sol.vae_reparameterize(mu, logvar, eps)


def vae_fixed_seed(mu, logvar, eps=None):
    torch.manual_seed(0)
    return sol.vae_reparameterize(mu, logvar, eps)


def vae_detached_sample(mu, logvar, eps=None):
    z, kl = sol.vae_reparameterize(mu, logvar, eps)
    return z.detach(), kl


def vq_without_straight_through(z_e, codebook):
    codes = torch.cdist(z_e, codebook).argmin(1)
    return codebook[codes], codes


def vq_argmax(z_e, codebook):
    codes = torch.cdist(z_e, codebook).argmax(1)
    return z_e + (codebook[codes] - z_e).detach(), codes


def vq_largest_dot_product(z_e, codebook):
    codes = (z_e @ codebook.T).argmax(1)
    return z_e + (codebook[codes] - z_e).detach(), codes


def vq_l1_distance(z_e, codebook):
    codes = torch.cdist(z_e, codebook, p=1).argmin(1)
    return z_e + (codebook[codes] - z_e).detach(), codes


def vq_straight_through_without_detach(z_e, codebook):
    codes = torch.cdist(z_e, codebook).argmin(1)
    return z_e + (codebook[codes] - z_e), codes


def vq_detach_swapped(z_e, codebook):
    codes = torch.cdist(z_e, codebook).argmin(1)
    z_q = codebook[codes]
    return z_q + (z_e - z_q).detach(), codes


def vq_gradient_to_codebook_too(z_e, codebook):
    codes = torch.cdist(z_e, codebook).argmin(1)
    return codebook[codes] + z_e - z_e.detach(), codes


def vq_returns_z_e(z_e, codebook):
    return z_e, torch.cdist(z_e, codebook).argmin(1)


def vq_fully_detached(z_e, codebook):
    z_q, codes = sol.vector_quantize(z_e, codebook)
    return z_q.detach(), codes


def gan_saturating_generator(real_logits, fake_logits):
    d_loss, _ = sol.gan_losses(real_logits, fake_logits)
    # minimise log(1 - D(G(z))): the minimax loss, whose gradient vanishes when D rejects the fakes
    return d_loss, -F.binary_cross_entropy_with_logits(
        fake_logits, torch.zeros_like(fake_logits)
    )


def gan_labels_swapped(real_logits, fake_logits):
    _, g_loss = sol.gan_losses(real_logits, fake_logits)
    bce = F.binary_cross_entropy_with_logits
    return bce(real_logits, torch.zeros_like(real_logits)) + bce(
        fake_logits, torch.ones_like(fake_logits)
    ), g_loss


def gan_generator_labels_swapped(real_logits, fake_logits):
    d_loss, _ = sol.gan_losses(real_logits, fake_logits)
    return d_loss, F.binary_cross_entropy_with_logits(
        fake_logits, torch.zeros_like(fake_logits)
    )


def gan_sigmoid_then_bce(real_logits, fake_logits):
    d_real, d_fake = torch.sigmoid(real_logits), torch.sigmoid(fake_logits)
    bce = F.binary_cross_entropy
    return bce(d_real, torch.ones_like(d_real)) + bce(
        d_fake, torch.zeros_like(d_fake)
    ), bce(d_fake, torch.ones_like(d_fake))


def gan_log_of_sigmoid(real_logits, fake_logits):
    d_real, d_fake = torch.sigmoid(real_logits), torch.sigmoid(fake_logits)
    d_loss = -(d_real.log().mean() + (1 - d_fake).log().mean())
    return d_loss, -d_fake.log().mean()


def gan_discriminator_loss_halved(real_logits, fake_logits):
    d_loss, g_loss = sol.gan_losses(real_logits, fake_logits)
    return d_loss / 2, g_loss


def gan_discriminator_real_only(real_logits, fake_logits):
    _, g_loss = sol.gan_losses(real_logits, fake_logits)
    return F.binary_cross_entropy_with_logits(
        real_logits, torch.ones_like(real_logits)
    ), g_loss


def _schedule(betas):
    alphas = 1 - betas
    abar = torch.cumprod(alphas, 0)
    return alphas, abar


def _view(v, t, x):
    return v[t].view((-1,) + (1,) * (x.ndim - 1))


def posterior_variance_is_beta(x0, x_t, t, betas):
    mean, _ = sol.ddpm_posterior(x0, x_t, t, betas)
    return mean, _view(betas, t, x0)


def posterior_alpha_for_alpha_bar(x0, x_t, t, betas):
    # 1 - alpha_t where 1 - abar_t belongs (and alpha_{t-1} for abar_{t-1})
    alphas, _ = _schedule(betas)
    alphas_prev = torch.cat([torch.ones_like(alphas[:1]), alphas[:-1]])
    b, a = _view(betas, t, x0), _view(alphas, t, x0)
    ap = _view(alphas_prev, t, x0)
    mean = b * ap.sqrt() / (1 - a) * x0 + (1 - ap) * a.sqrt() / (1 - a) * x_t
    return mean, b * (1 - ap) / (1 - a)


def posterior_alpha_bar_in_xt_coefficient(x0, x_t, t, betas):
    alphas, abar = _schedule(betas)
    abar_prev = torch.cat([torch.ones_like(abar[:1]), abar[:-1]])
    b, ab, abp = (
        _view(betas, t, x0),
        _view(abar, t, x0),
        _view(abar_prev, t, x0),
    )
    mean = (
        b * abp.sqrt() / (1 - ab) * x0 + (1 - abp) * ab.sqrt() / (1 - ab) * x_t
    )
    return mean, b * (1 - abp) / (1 - ab)


def posterior_prev_wraps_around(x0, x_t, t, betas):
    # abar[t - 1] with t = 0 is abar[-1], the last step's
    alphas, abar = _schedule(betas)
    b, a, ab = _view(betas, t, x0), _view(alphas, t, x0), _view(abar, t, x0)
    abp = _view(abar, t - 1, x0)
    mean = (
        b * abp.sqrt() / (1 - ab) * x0 + (1 - abp) * a.sqrt() / (1 - ab) * x_t
    )
    return mean, b * (1 - abp) / (1 - ab)


def posterior_no_shift(x0, x_t, t, betas):
    alphas, abar = _schedule(betas)
    b, a, ab = _view(betas, t, x0), _view(alphas, t, x0), _view(abar, t, x0)
    abp = ab  # abar_t where abar_{t-1} belongs
    mean = (
        b * abp.sqrt() / (1 - ab) * x0 + (1 - abp) * a.sqrt() / (1 - ab) * x_t
    )
    return mean, b * (1 - abp) / (1 - ab)


def posterior_coefficients_swapped(x0, x_t, t, betas):
    mean, var = sol.ddpm_posterior(x_t, x0, t, betas)
    return mean, var


def posterior_returns_std(x0, x_t, t, betas):
    mean, var = sol.ddpm_posterior(x0, x_t, t, betas)
    return mean, var.sqrt()


def guidance_on_the_wrong_term(eps_cond, eps_uncond, w):
    return (1 + w) * eps_uncond - w * eps_cond


def guidance_without_the_one(eps_cond, eps_uncond, w):
    # the other paper's convention (w = 1 is unguided) used with the book's w
    return eps_uncond + w * (eps_cond - eps_uncond)


def guidance_weight_on_conditional_only(eps_cond, eps_uncond, w):
    return (1 + w) * eps_cond


def guidance_averaged(eps_cond, eps_uncond, w):
    return ((1 + w) * eps_cond + w * eps_uncond) / (1 + 2 * w)


def frechet_without_trace_term(mu1, sigma1, mu2, sigma2):
    return float(((mu1 - mu2) ** 2).sum())


def frechet_sqrt_of_product_elementwise(mu1, sigma1, mu2, sigma2):
    root = (sigma1 @ sigma2).sqrt()  # elementwise, not a matrix square root
    return float(
        ((mu1 - mu2) ** 2).sum() + torch.trace(sigma1 + sigma2 - 2 * root)
    )


def frechet_elementwise_product(mu1, sigma1, mu2, sigma2):
    root = (sigma1 * sigma2).sqrt()
    return float(
        ((mu1 - mu2) ** 2).sum() + torch.trace(sigma1 + sigma2 - 2 * root)
    )


def frechet_product_of_roots(mu1, sigma1, mu2, sigma2):
    r1, r2 = (np.real(sqrtm(s.numpy())) for s in (sigma1, sigma2))
    return float(((mu1 - mu2) ** 2).sum()) + float(
        np.trace(sigma1.numpy() + sigma2.numpy() - 2 * r1 @ r2)
    )


def frechet_without_the_two(mu1, sigma1, mu2, sigma2):
    root = np.real(sqrtm(sigma1.numpy() @ sigma2.numpy()))
    return float(((mu1 - mu2) ** 2).sum()) + float(
        np.trace(sigma1.numpy() + sigma2.numpy() - root)
    )


def frechet_mean_distance_not_squared(mu1, sigma1, mu2, sigma2):
    d2 = sol.gaussian_frechet_distance(mu1, sigma1, mu2, sigma2)
    return d2 - float(((mu1 - mu2) ** 2).sum()) + float((mu1 - mu2).norm())


def frechet_square_root_taken(mu1, sigma1, mu2, sigma2):
    return (
        max(sol.gaussian_frechet_distance(mu1, sigma1, mu2, sigma2), 0.0)
        ** 0.5
    )


EXERCISES = {
    "vae_reparameterize": [
        vae_sigma_is_exp_logvar,
        vae_kl_wrong_sign,
        vae_kl_summed_over_batch,
        vae_kl_averaged_over_dims,
        vae_kl_per_example,
        vae_kl_without_half,
        vae_kl_with_sigma_for_variance,
        vae_ignores_given_eps,
        vae_samples_with_torch_normal,
        vae_samples_with_distribution,
        vae_one_noise_for_the_batch,
        vae_fixed_seed,
        vae_detached_sample,
    ],
    "vector_quantize": [
        vq_without_straight_through,
        vq_argmax,
        vq_largest_dot_product,
        vq_l1_distance,
        vq_straight_through_without_detach,
        vq_detach_swapped,
        vq_gradient_to_codebook_too,
        vq_returns_z_e,
        vq_fully_detached,
    ],
    "gan_losses": [
        gan_saturating_generator,
        gan_labels_swapped,
        gan_generator_labels_swapped,
        gan_sigmoid_then_bce,
        gan_log_of_sigmoid,
        gan_discriminator_loss_halved,
        gan_discriminator_real_only,
    ],
    "ddpm_posterior": [
        posterior_variance_is_beta,
        posterior_alpha_for_alpha_bar,
        posterior_alpha_bar_in_xt_coefficient,
        posterior_prev_wraps_around,
        posterior_no_shift,
        posterior_coefficients_swapped,
        posterior_returns_std,
    ],
    "guided_noise": [
        guidance_on_the_wrong_term,
        guidance_without_the_one,
        guidance_weight_on_conditional_only,
        guidance_averaged,
    ],
    "gaussian_frechet_distance": [
        frechet_without_trace_term,
        frechet_sqrt_of_product_elementwise,
        frechet_elementwise_product,
        frechet_product_of_roots,
        frechet_without_the_two,
        frechet_mean_distance_not_squared,
        frechet_square_root_taken,
    ],
}


def test_messages_name_where_the_answer_differs():
    msg = ex.check_vae_reparameterize(vae_sigma_is_exp_logvar).message
    assert msg.startswith("z with the given eps")
    msg = ex.check_vae_reparameterize(vae_kl_wrong_sign).message
    assert msg.startswith("the KL")
    msg = ex.check_vae_reparameterize(vae_samples_with_torch_normal).message
    assert "gradient" in msg and "eps=None" in msg
    msg = ex.check_vector_quantize(vq_without_straight_through).message
    assert "no gradient" in msg
    msg = ex.check_vector_quantize(vq_straight_through_without_detach).message
    assert "as zero" in msg
    msg = ex.check_vector_quantize(vq_largest_dot_product).message
    assert "is nearer" in msg
    msg = ex.check_gan_losses(gan_saturating_generator).message
    assert msg.startswith("the generator's loss")
    msg = ex.check_gan_losses(gan_sigmoid_then_bce).message
    assert "±200" in msg
    msg = ex.check_ddpm_posterior(posterior_prev_wraps_around).message
    assert "t = 0" in msg
    msg = ex.check_guided_noise(guidance_without_the_one).message
    assert "w = 0" in msg
    msg = ex.check_gaussian_frechet_distance(
        frechet_without_trace_term
    ).message
    assert "the closed form gives" in msg


def test_checks_accept_the_books_own_functions():
    from vnotes.generative.autoencoders import (
        VectorQuantizer,
        gaussian_kl,
        reparameterize,
    )
    from vnotes.generative.diffusion import GaussianDiffusion
    from vnotes.generative.judge import frechet_distance

    assert ex.check_vae_reparameterize(
        lambda mu, logvar, eps=None: (
            reparameterize(mu, logvar, eps),
            gaussian_kl(mu, logvar).mean(),
        )
    ).passed
    assert ex.check_gaussian_frechet_distance(frechet_distance).passed

    def book_vq(z_e, codebook):
        # the book's quantizer needs two entries at least: a one-entry codebook is given a far-away second
        far = torch.full_like(codebook[:1], 1e3)
        book = codebook if len(codebook) > 1 else torch.cat([codebook, far])
        vq = VectorQuantizer(book.shape[0], book.shape[1], dead_after=0)
        vq.codebook.weight.data = book.detach().float()
        vq.eval()
        codes = vq.nearest(z_e.detach())
        return z_e + (codebook[codes] - z_e).detach(), codes

    assert ex.check_vector_quantize(book_vq).passed
    # the book's posterior (float32 storage) agrees with the closed form of the check
    process = GaussianDiffusion(1000, "linear")
    x0, x_t = torch.randn(3, 1, 4, 4), torch.randn(3, 1, 4, 4)
    t = torch.tensor([0, 500, 999])
    mean, var = process.q_posterior(x0, x_t, t)
    want_mean, want_var = sol.ddpm_posterior(
        x0.double(), x_t.double(), t, process.betas.double()
    )
    assert torch.allclose(mean.double(), want_mean, atol=1e-5)
    assert torch.allclose(var.double(), want_var, atol=1e-7)
    eps_c, eps_u = torch.randn(2, 1, 4, 4), torch.randn(2, 1, 4, 4)
    assert torch.allclose(
        sol.guided_noise(eps_c, eps_u, 2.0), 3 * eps_c - 2 * eps_u
    )


def test_vae_check_leaves_the_random_state():
    state = torch.random.get_rng_state()
    ex.check_vae_reparameterize(sol.vae_reparameterize)
    assert torch.equal(state, torch.random.get_rng_state())


# ---------------------------------------------------------------- quizzes: answer keys follow the page's numbers
def _correct(question):
    return [a for a in question["answers"] if a.get("correct")]


def test_autoencoders_quiz_keys_follow_the_numbers_passed_in():
    for ae, vae, kl, perp, want_active, want_better in (
        (0.01, 0.02, [0.0, 2.0, 0.05, 1.0], 11.4, 2, "the AE"),
        (0.03, 0.02, [0.5, 2.0, 0.2, 1.0, 0.3], 20.6, 5, "the VAE"),
    ):
        quiz = ex.autoencoders_quiz(
            ae_mse=ae,
            vae_mse=vae,
            kl_per_dim=torch.tensor(kl),
            perplexity=perp,
            num_codes=32,
        )
        assert len(quiz) >= 3
        for q in quiz:
            assert len(_correct(q)) == 1, q["question"]
        assert _correct(quiz[0])[0]["answer"] == "exp(logvar / 2)"
        assert _correct(quiz[1])[0]["value"] == want_active
        assert _correct(quiz[2])[0]["answer"] == want_better
        assert _correct(quiz[3])[0]["value"] == round(perp)
        json.dumps(quiz)


def test_gan_quiz_keys_follow_the_numbers_passed_in():
    for hist, s_dist, r_dist, d_tr, d_va, classes, closer, overfit in (
        (
            [5, 0, 3, 0, 0, 0, 0, 0, 0, 2],
            1.0,
            2.0,
            0.9,
            0.5,
            3,
            "closer",
            "the training",
        ),
        ([1] * 10, 3.0, 2.0, 0.6, 0.55, 10, "farther", "about the same"),
    ):
        quiz = ex.gan_quiz(
            class_histogram=hist,
            sample_distance=s_dist,
            real_distance=r_dist,
            d_train=d_tr,
            d_val=d_va,
        )
        assert len(quiz) >= 3
        for q in quiz:
            assert len(_correct(q)) == 1, q["question"]
        assert _correct(quiz[0])[0]["answer"].startswith("−log D(G(z))")
        assert _correct(quiz[1])[0]["value"] == classes
        assert _correct(quiz[2])[0]["answer"].startswith(closer)
        assert _correct(quiz[3])[0]["answer"].startswith(overfit)
        json.dumps(quiz)


def test_diffusion_quiz_keys_follow_the_numbers_passed_in():
    for T, steps, acc, rises in (
        (1000, 25, [0.5, 0.8], "rises"),
        (200, 8, [0.6, 0.7, 0.4], "does not rise"),
    ):
        quiz = ex.diffusion_quiz(
            timesteps=T,
            ddim_steps=steps,
            guidance_scales=[0.0, 1.0, 4.0][: len(acc)],
            conditional_accuracy=acc,
        )
        assert len(quiz) >= 3
        for q in quiz:
            assert len(_correct(q)) == 1, q["question"]
        assert _correct(quiz[0])[0]["answer"] == "the conditional prediction"
        assert _correct(quiz[1])[0]["value"] == T
        assert _correct(quiz[2])[0]["value"] == round(T / steps)
        assert _correct(quiz[3])[0]["answer"] == rises
        json.dumps(quiz)
    with pytest.raises(ValueError):
        ex.diffusion_quiz(
            timesteps=10,
            ddim_steps=2,
            guidance_scales=[0.0],
            conditional_accuracy=[0.5],
        )


def test_yardstick_quiz_keys_follow_the_numbers_passed_in():
    for fd, ms, floor, closest, slowest, above in (
        (
            {"AE": 5.0, "GAN": 2.0, "DDPM": 3.0},
            {"AE": 0.1, "GAN": 0.2, "DDPM": 50.0},
            2.5,
            "GAN",
            "DDPM",
            2,
        ),
        (
            {"AE": 1.0, "GAN": 2.0, "DDPM": 3.0},
            {"AE": 9.0, "GAN": 0.2, "DDPM": 5.0},
            0.5,
            "AE",
            "AE",
            3,
        ),
    ):
        quiz = ex.yardstick_quiz(
            frechet_distances=fd, sampling_ms=ms, real_floor=floor
        )
        assert len(quiz) >= 3
        for q in quiz:
            assert len(_correct(q)) == 1, q["question"]
        assert _correct(quiz[0])[0]["answer"].startswith("a trace term")
        assert _correct(quiz[1])[0]["answer"] == closest
        assert _correct(quiz[2])[0]["answer"] == slowest
        assert _correct(quiz[3])[0]["value"] == above
        json.dumps(quiz)


# ---------------------------------------------------------------- the pages


# Each page with exercises: its stubs (each checked and with a folded solution), how many exercises its
# markdown numbers, and the one call that builds its quiz.
EXERCISE_PAGES = {
    "06a_autoencoders": (
        ("vae_reparameterize", "vector_quantize"),
        3,
        "autoencoders_quiz",
    ),
    "06b_gan": (("gan_losses",), 2, "gan_quiz"),
    "06c_diffusion": (
        ("ddpm_posterior", "guided_noise"),
        3,
        "diffusion_quiz",
    ),
    "06d_yardstick": (("gaussian_frechet_distance",), 2, "yardstick_quiz"),
}

# The quiz question the rendered-page test clicks, with its answer (fixed by the method, not by a run).
QUIZ_CLICKS = {
    "06a_autoencoders": ("which expression is σ", "exp(logvar / 2)"),
    "06b_gan": (
        "Which generator loss still gives",
        "−log D(G(z)), the non-saturating loss",
    ),
    "06c_diffusion": (
        "With guidance scale w = 0",
        "the conditional prediction",
    ),
    "06d_yardstick": (
        "what does the Fréchet distance between two Gaussians add",
        "a trace term that compares the two covariances",
    ),
}


def test_chapter_6_has_at_least_three_implement_exercises():
    assert sum(len(stubs) for stubs, _, _ in EXERCISE_PAGES.values()) >= 3
