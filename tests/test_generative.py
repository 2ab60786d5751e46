"""Chapter 6: the generative models' formulas, each checked against a reference or a closed form."""

import copy
import math

import numpy as np
import pytest
import scipy.linalg
import torch
from torch.distributions import Bernoulli, Normal, kl_divergence

from vnotes.generative import GaussianDiffusion, Judge, UNet, judge_report
from vnotes.generative.autoencoders import (
    VAE,
    VQVAE,
    Autoencoder,
    VectorQuantizer,
    code_perplexity,
    code_sequences,
    fit_latent_gaussian,
    gaussian_kl,
    reparameterize,
    sample_codes,
    vae_loss,
    vqvae_loss,
)
from vnotes.generative.diffusion import (
    AttentionBlock,
    cosine_alpha_bar,
    cosine_beta_schedule,
    from_unit,
    linear_beta_schedule,
    timestep_embedding,
)
from vnotes.generative.gan import (
    AdversarialStep,
    dcgan,
    dcgan_optimizers,
    pairwise_diversity,
)
from vnotes.generative.judge import (
    class_coverage,
    frechet_distance,
    gaussian_stats,
    random_shift,
)


# --------------------------------------------------------------------------- VAE
def test_gaussian_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mu, logvar = (
        torch.randn(64, 8, generator=g) * 2,
        torch.randn(64, 8, generator=g),
    )
    ref = kl_divergence(
        Normal(mu, (0.5 * logvar).exp()),
        Normal(torch.zeros_like(mu), torch.ones_like(mu)),
    ).sum(-1)
    assert torch.allclose(gaussian_kl(mu, logvar), ref, atol=1e-5)
    assert torch.allclose(
        gaussian_kl(torch.zeros(3, 4), torch.zeros(3, 4)), torch.zeros(3)
    )


def test_reparameterization_is_a_sample_with_gradients():
    mu = torch.tensor([[1.0, -2.0]], requires_grad=True)
    logvar = torch.tensor([[0.0, math.log(4.0)]], requires_grad=True)
    eps = torch.tensor([[0.5, -1.0]])
    z = reparameterize(mu, logvar, eps)
    assert torch.allclose(z, torch.tensor([[1.5, -4.0]]))
    z.sum().backward()
    assert torch.allclose(mu.grad, torch.ones(1, 2))  # dz/dmu = 1
    assert torch.allclose(
        logvar.grad, 0.5 * torch.exp(0.5 * logvar.detach()) * eps
    )  # dz/dlogvar = sigma eps / 2
    # many draws have the asked mean and standard deviation
    many = reparameterize(
        torch.full((200_000, 1), 3.0), torch.full((200_000, 1), math.log(0.25))
    )
    assert abs(many.mean() - 3.0) < 0.01 and abs(many.std() - 0.5) < 0.01


def test_vae_loss_is_the_negative_elbo():
    torch.manual_seed(0)
    vae = VAE((1, 4, 4), latent_dim=3, hidden=(16,))
    x = torch.rand(5, 1, 4, 4)
    torch.manual_seed(1)
    loss, parts = vae_loss(vae, x)
    torch.manual_seed(1)
    logits, mu, logvar = vae(x)
    log_lik = (
        Bernoulli(logits=logits, validate_args=False)
        .log_prob(x)
        .sum((1, 2, 3))
    )  # log p(x | z) for [0, 1] targets
    kl = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0)).sum(
        -1
    )
    assert torch.allclose(loss, (-log_lik + kl).mean(), atol=1e-4)
    assert torch.allclose(parts["kl"], kl.mean(), atol=1e-5)


def test_vae_and_autoencoder_shapes_and_errors():
    ae, vae = Autoencoder((1, 8, 8), 4, (32,)), VAE((1, 8, 8), 4, (32,))
    x = torch.rand(3, 1, 8, 8)
    assert ae(x).shape == x.shape and ae.encode(x).shape == (3, 4)
    assert (
        vae.sample(6).shape == (6, 1, 8, 8)
        and vae.reconstruct(x).shape == x.shape
    )
    gauss = fit_latent_gaussian(torch.randn(100, 4) * 3 + 1)
    assert gauss.sample((5,)).shape == (5, 4)
    with pytest.raises(ValueError, match="latent_dim"):
        VAE((1, 8, 8), 0)
    with pytest.raises(ValueError, match="image_shape"):
        Autoencoder((8, 8), 2)


# --------------------------------------------------------------------------- VQ-VAE
def test_quantizer_picks_the_nearest_code_and_passes_gradients_straight_through():
    torch.manual_seed(0)
    vq = VectorQuantizer(num_codes=10, code_dim=3, dead_after=0)
    with torch.no_grad():
        vq.codebook.weight.normal_()
    z_e = torch.randn(2, 3, 4, 4, requires_grad=True)
    z_q, codes, losses = vq(z_e)
    flat = z_e.detach().permute(0, 2, 3, 1).reshape(-1, 3)
    ref = torch.cdist(flat, vq.codebook.weight.detach()).argmin(1)
    assert torch.equal(codes.flatten(), ref)
    assert torch.allclose(
        z_q.detach().permute(0, 2, 3, 1).reshape(-1, 3),
        vq.codebook.weight.detach()[ref],
    )
    # straight-through: d(sum z_q)/d z_e = 1 everywhere
    (z_q.sum()).backward(retain_graph=True)
    assert torch.allclose(z_e.grad, torch.ones_like(z_e))
    # the codebook loss moves only the codebook; the commitment loss moves only the encoder output
    z_e.grad = None
    vq.codebook.weight.grad = None
    losses["vq_loss"].backward()
    e = vq.codebook.weight.detach()[ref]
    n = flat.numel()
    assert torch.allclose(
        z_e.grad.permute(0, 2, 3, 1).reshape(-1, 3),
        vq.beta * 2 * (flat - e) / n,
        atol=1e-6,
    )
    grad_codebook = torch.zeros_like(vq.codebook.weight).index_add_(
        0, ref, 2 * (e - flat) / n
    )
    assert torch.allclose(vq.codebook.weight.grad, grad_codebook, atol=1e-6)


def test_dead_codes_are_restarted_at_encoder_outputs():
    torch.manual_seed(0)
    vq = VectorQuantizer(num_codes=4, code_dim=2, dead_after=3)
    with torch.no_grad():
        vq.codebook.weight.copy_(
            torch.tensor([[0.0, 0.0], [0.1, 0.0], [50.0, 50.0], [-50.0, 50.0]])
        )
    z = torch.randn(1, 2, 4, 4) * 0.1  # always nearest to code 0 or 1
    for _ in range(3):
        vq(z)
    flat = z.permute(0, 2, 3, 1).reshape(-1, 2)
    assert vq.restarts == 2
    for k in (2, 3):  # moved onto encoder outputs
        assert (
            torch.cdist(vq.codebook.weight.detach()[k : k + 1], flat).min()
            < 1e-6
        )
    vq_off = VectorQuantizer(num_codes=4, code_dim=2, dead_after=0)
    for _ in range(5):
        vq_off(z)
    assert vq_off.restarts == 0


def test_code_perplexity_counts_codes_in_use():
    assert code_perplexity(torch.arange(8).repeat(10), 8) == pytest.approx(8.0)
    assert code_perplexity(torch.full((50,), 3), 8) == pytest.approx(1.0)


def test_vqvae_shapes_loss_and_prior_sampling():
    torch.manual_seed(0)
    model = VQVAE(1, hidden=16, num_codes=8, code_dim=4)
    x = torch.rand(2, 1, 16, 16)
    recon, codes, _ = model(x)
    assert recon.shape == x.shape and codes.shape == (2, 4, 4)
    loss, parts = vqvae_loss(model, x)
    assert loss.item() > parts["recon"].item() >= 0
    seq = code_sequences(codes, 8)
    assert seq.shape == (2, 17) and (seq[:, 0] == 8).all()

    class FavoursStart(
        torch.nn.Module
    ):  # a prior that would pick the start token if allowed
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, ids):
            logits = torch.zeros(*ids.shape, 9)
            logits[..., 8] = 100.0
            return logits

    grids = sample_codes(
        FavoursStart(),
        5,
        (4, 4),
        8,
        generator=torch.Generator().manual_seed(0),
    )
    assert grids.shape == (5, 4, 4) and int(grids.max()) < 8


# --------------------------------------------------------------------------- diffusion
def test_linear_and_cosine_schedules():
    b = linear_beta_schedule(1000)
    assert b[0].item() == pytest.approx(1e-4) and b[
        -1
    ].item() == pytest.approx(0.02)
    abar = cosine_alpha_bar(100)
    betas = cosine_beta_schedule(100)
    assert torch.allclose(
        torch.cumprod(1 - betas, 0)[:90], abar[1:91], atol=1e-10
    )  # unclipped part
    t = torch.arange(101, dtype=torch.float64) / 100
    f = torch.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
    assert torch.allclose(abar, f / f[0])
    with pytest.raises(ValueError, match="schedule"):
        GaussianDiffusion(10, "quadratic")


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_closed_form_q_matches_step_by_step_noising(schedule):
    d = GaussianDiffusion(200, schedule)
    m, v = d.stepwise_coefficients()
    assert torch.allclose(m.float(), d.sqrt_alpha_bar, atol=1e-6)
    assert torch.allclose(v.float(), 1 - d.alpha_bar, atol=1e-6)
    # Monte Carlo: noising 20,000 copies of x0 step by step gives the closed-form mean and spread
    x0 = torch.full((20_000, 1), 0.7)
    t = 120
    xt, _ = d.q_sample_stepwise(
        x0, t, generator=torch.Generator().manual_seed(0)
    )
    assert abs(xt.mean().item() - 0.7 * d.sqrt_alpha_bar[t].item()) < 0.02
    assert abs(xt.std().item() - d.sqrt_one_minus_alpha_bar[t].item()) < 0.02
    # and q_sample with a given noise is the formula itself
    noise = torch.randn(4, 1)
    tt = torch.tensor([0, 5, 50, 199])
    ref = (
        d.sqrt_alpha_bar[tt, None] * x0[:4]
        + d.sqrt_one_minus_alpha_bar[tt, None] * noise
    )
    assert torch.allclose(d.q_sample(x0[:4], tt, noise), ref)


def test_posterior_is_bayes_rule_for_the_two_gaussians():
    d = GaussianDiffusion(50, "linear")
    x0, xt = torch.tensor([[0.3]]), torch.tensor([[-0.8]])
    for t in (1, 10, 49):
        tt = torch.tensor([t])
        mean, var = d.q_posterior(x0, xt, tt)
        # q(x_{t-1} | x0) = N(sqrt(abar_{t-1}) x0, 1 - abar_{t-1});  q(x_t | x_{t-1}) = N(sqrt(alpha_t) x_{t-1}, beta_t)
        ab_prev, a, b = (
            d.alpha_bar[t - 1].double(),
            d.alphas[t].double(),
            d.betas[t].double(),
        )
        precision = 1 / (1 - ab_prev) + a / b
        ref_mean = (
            ab_prev.sqrt() * 0.3 / (1 - ab_prev) + a.sqrt() * -0.8 / b
        ) / precision
        assert mean.item() == pytest.approx(ref_mean.item(), rel=1e-4)
        assert var.item() == pytest.approx((1 / precision).item(), rel=1e-4)


class _ToyEps(torch.nn.Module):
    """A fixed smooth 'noise predictor' to test samplers without training."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(0.3))

    def forward(self, x, t, cond=None, cond_mask=None):
        out = (
            self.scale * torch.tanh(x) + 0.001 * t.float()[:, None, None, None]
        )
        if cond is not None:
            shift = cond.float()[:, None, None, None]
            if cond_mask is not None:
                shift = shift * cond_mask.float()[:, None, None, None]
            out = out + 0.05 * shift
        return out


def test_ddim_with_eta_one_and_all_steps_is_ancestral_sampling():
    d = GaussianDiffusion(30, "linear", clip_denoised=False)
    model = _ToyEps()
    a = d.sample(
        model, (3, 1, 2, 2), generator=torch.Generator().manual_seed(7)
    )
    b = d.ddim_sample(
        model,
        (3, 1, 2, 2),
        steps=30,
        eta=1.0,
        generator=torch.Generator().manual_seed(7),
    )
    assert torch.allclose(a, b, atol=1e-4)
    c = d.ddim_sample(
        model,
        (3, 1, 2, 2),
        steps=5,
        eta=0.0,
        generator=torch.Generator().manual_seed(7),
    )
    assert (
        d.ddim_timesteps(5) == [0, 7, 14, 22, 29] and torch.isfinite(c).all()
    )


def test_classifier_free_guidance_combines_conditional_and_unconditional():
    d = GaussianDiffusion(10)
    model = _ToyEps()
    x, t, y = (
        torch.randn(4, 1, 2, 2),
        torch.tensor([1, 2, 3, 4]),
        torch.tensor([1, 2, 0, 3]),
    )
    w = 2.5
    eps_c = model(x, t, y)
    eps_u = model(x, t, y, torch.zeros(4, dtype=torch.bool))
    assert torch.allclose(
        d.predict_noise(model, x, t, y, w),
        (1 + w) * eps_c - w * eps_u,
        atol=1e-6,
    )
    assert torch.allclose(d.predict_noise(model, x, t, y, 0.0), eps_c)


def test_training_loss_drops_the_condition_at_the_asked_rate():
    seen = []

    class Spy(torch.nn.Module):
        def forward(self, x, t, cond=None, cond_mask=None):
            seen.append(cond_mask)
            return torch.zeros_like(x)

    torch.manual_seed(0)
    d = GaussianDiffusion(100, cond_drop_prob=0.25)
    loss = d.loss(
        Spy(), torch.zeros(4000, 1, 1, 1), torch.zeros(4000, dtype=torch.long)
    )
    assert abs((~seen[-1]).float().mean().item() - 0.25) < 0.03
    assert loss.item() == pytest.approx(
        1.0, abs=0.1
    )  # E||eps||^2 = 1 for a zero predictor


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_min_snr_loss_weights_each_example_by_its_step(schedule):
    """Min-SNR-gamma (Hang et al., 2023): an example noised to step t counts min(SNR_t, gamma) / SNR_t."""
    gamma = 2.0
    d = GaussianDiffusion(
        100, schedule, cond_drop_prob=0.0, min_snr_gamma=gamma
    )
    plain = GaussianDiffusion(100, schedule, cond_drop_prob=0.0)
    snr = (plain.alpha_bar / (1 - plain.alpha_bar)).double()
    expected = (
        torch.minimum(snr, torch.tensor(gamma, dtype=torch.float64)) / snr
    )
    # (expected is read from the float32 abar_t: 1 - abar_t near 1 keeps ~3 significant digits)
    assert torch.allclose(d.loss_weight.double(), expected, rtol=2e-3)
    # nearly clean steps are down-weighted, the noisy ones (SNR <= gamma) keep weight 1
    assert d.loss_weight[0] < 0.05 and d.loss_weight[-1] == 1.0

    # a model that predicts half of x_t: its error differs from example to example
    class Half(torch.nn.Module):
        def forward(self, x, t, cond=None, cond_mask=None):
            return 0.5 * x

    x0 = torch.randn(64, 3, 4, 4)
    torch.manual_seed(1)
    got = d.loss(Half(), x0)
    # the same draws of t and noise, weighted by hand
    torch.manual_seed(1)
    t = torch.randint(0, 100, (64,))
    noise = torch.randn_like(x0)
    x_t = plain.q_sample(x0, t, noise)
    per_example = ((0.5 * x_t - noise) ** 2).mean(dim=(1, 2, 3))
    weights = d.loss_weight[t]
    assert torch.allclose(got, (weights * per_example).mean(), rtol=1e-6)
    # with gamma above every SNR all weights are 1: the unweighted L_simple, draw for draw
    huge = GaussianDiffusion(
        100, schedule, cond_drop_prob=0.0, min_snr_gamma=1e12
    )
    torch.manual_seed(1)
    a = huge.loss(Half(), x0)
    torch.manual_seed(1)
    assert torch.allclose(a, plain.loss(Half(), x0), rtol=1e-6)
    for bad in (0.0, -1.0):
        with pytest.raises(ValueError, match="min_snr_gamma"):
            GaussianDiffusion(10, min_snr_gamma=bad)


def test_timestep_embedding_is_sinusoidal():
    t = torch.tensor([0, 3, 250])
    emb = timestep_embedding(t, 8)
    freqs = 10000 ** (-torch.arange(4) / 4)
    assert torch.allclose(
        emb,
        torch.cat(
            [torch.sin(t[:, None] * freqs), torch.cos(t[:, None] * freqs)], -1
        ),
        atol=1e-5,
    )


def test_attention_block_matches_explicit_softmax_attention():
    torch.manual_seed(0)
    block = AttentionBlock(8)
    torch.nn.init.normal_(block.proj.weight)
    x = torch.randn(2, 8, 3, 3)
    h = block.norm(x)
    q, k, v = block.qkv(h).reshape(2, 3, 8, 9).unbind(1)  # [B, C, HW]
    attn = torch.softmax(
        q.transpose(1, 2) @ k / math.sqrt(8), dim=-1
    )  # [B, HW, HW]
    out = (v @ attn.transpose(1, 2)).reshape(2, 8, 3, 3)
    assert torch.allclose(block(x), x + block.proj(out), atol=1e-5)


def test_unet_conditioning_and_shapes():
    torch.manual_seed(0)
    for kw in ({}, {"num_classes": 10}, {"cond_dim": 5}):
        net = UNet(
            1,
            8,
            channel_mults=(1, 2),
            attention_resolutions=(4,),
            image_size=8,
            **kw,
        )
        x, t = torch.randn(3, 1, 8, 8), torch.tensor([0, 10, 999])
        assert torch.equal(
            net(x, t), torch.zeros_like(x)
        )  # zero-initialised output layer
    net = UNet(3, 8, cond_dim=5, channel_mults=(1, 2), image_size=8)
    t = torch.tensor([4, 5])
    c = torch.randn(2, 5)
    assert torch.allclose(
        net.embed(t, c, torch.tensor([False, False])), net.embed(t, None)
    )
    assert not torch.allclose(net.embed(t, c), net.embed(t, None))
    with pytest.raises(ValueError, match="not both"):
        UNet(1, 8, num_classes=3, cond_dim=4)
    with pytest.raises(ValueError, match="image_size=12"):
        UNet(1, 8, channel_mults=(1, 2, 2, 2), image_size=12)
    with pytest.raises(ValueError, match="cond"):
        UNet(1, 8, num_classes=3, channel_mults=(1, 2), image_size=8).embed(
            t, torch.randn(2, 4)
        )


# --------------------------------------------------------------------------- GAN
def test_dcgan_shapes_init_and_alternating_updates():
    torch.manual_seed(0)
    gan = dcgan(z_dim=8, channels=1, image_size=16, g_width=8, d_width=8)
    z = torch.randn(4, 8)
    x = gan.generator(z)
    assert x.shape == (4, 1, 16, 16) and x.abs().max() <= 1
    assert gan.discriminator(x).shape == (4,)
    w = gan.discriminator.net[0].weight
    assert abs(w.std().item() - 0.02) < 0.005  # DCGAN's N(0, 0.02)
    g_opt, d_opt = dcgan_optimizers(gan)
    assert (
        d_opt.defaults["betas"] == (0.5, 0.999)
        and d_opt.defaults["lr"] == 2e-4
    )
    d_before = [p.detach().clone() for p in gan.discriminator.parameters()]
    g_before = [p.detach().clone() for p in gan.generator.parameters()]
    step = AdversarialStep(d_opt, 8, torch.Generator().manual_seed(0))
    g_loss, logs = step(gan, (torch.rand(4, 1, 16, 16) * 2 - 1,))
    assert any(
        not torch.equal(a, b)
        for a, b in zip(d_before, gan.discriminator.parameters())
    )  # D stepped
    assert all(
        torch.equal(a, b) for a, b in zip(g_before, gan.generator.parameters())
    )  # G not yet
    g_loss.backward()
    assert all(p.grad is not None for p in gan.generator.parameters())
    assert 0 <= logs["D(x)"].item() <= 1 and logs["d_loss"].item() > 0
    with pytest.raises(ValueError, match="image_size"):
        dcgan(image_size=20)


def test_scan_grid_outputs_are_enlarged_scans_and_reach_every_real_digit():
    from vnotes.data import load_digits
    from vnotes.generative.gan import ScanGrid

    grid = ScanGrid(8, 16)
    # every real 16x16 digit is an output: feed its 8x8 scan, each pixel repeated over a 2x2 block
    scans = from_unit(
        load_digits("val", size=8).images[:20]
    )  # [20, 1, 8, 8] in [-1, 1]
    real = from_unit(load_digits("val", size=16).images[:20])
    blocky = scans.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    assert torch.allclose(grid(blocky), real, atol=1e-6)
    # a generator that ends with it draws images with 8 x 8 = 64 degrees of freedom, not 256
    torch.manual_seed(0)
    plain = dcgan(z_dim=8, image_size=16, g_width=8, d_width=8)
    scanned = dcgan(z_dim=8, image_size=16, g_width=8, d_width=8, scan_size=8)
    z = torch.randn(300, 8)
    with torch.no_grad():
        x_plain, x_scan = plain.generator(z), scanned.generator(z)
    assert x_scan.shape == (300, 1, 16, 16) and x_scan.abs().max() <= 1
    assert torch.linalg.matrix_rank(x_scan.flatten(1), rtol=1e-4) <= 64
    assert torch.linalg.matrix_rank(x_plain.flatten(1), rtol=1e-4) > 64
    assert not list(grid.parameters())  # a fixed map: nothing to learn
    for bad in (3, 16, 0):
        with pytest.raises(ValueError, match=f"scan_size={bad}"):
            ScanGrid(bad, 16)


def test_gan_samples_with_batch_statistics_and_leaves_the_model_unchanged():
    # DCGAN's reference code samples with the generator in training mode: batch norm uses the batch's statistics
    torch.manual_seed(0)
    gan = dcgan(z_dim=8, channels=1, image_size=16, g_width=8, d_width=8)
    gan.generator.net[1].running_mean.fill_(
        3.0
    )  # running averages far from any batch's
    gan.eval()
    before = [b.clone() for b in gan.generator.buffers()]
    z = torch.randn(6, 8)
    x = gan.sample(6, z=z)
    reference = copy.deepcopy(gan.generator).train()
    with torch.no_grad():
        assert torch.allclose(x, reference(z))
        assert not torch.allclose(x, gan.generator(z))  # eval mode differs
    assert all(
        torch.equal(a, b) for a, b in zip(before, gan.generator.buffers())
    )
    assert not gan.generator.training  # mode restored
    g = torch.Generator().manual_seed(1)
    assert torch.equal(
        gan.sample(5, g), gan.sample(5, torch.Generator().manual_seed(1))
    )
    with pytest.raises(ValueError, match="z has shape"):
        gan.sample(4, z=torch.randn(3, 8))


def test_pairwise_diversity():
    f = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    assert pairwise_diversity(f) == pytest.approx(5.0)
    assert pairwise_diversity(torch.ones(5, 3)) == pytest.approx(0.0)


# --------------------------------------------------------------------------- the judge
def test_frechet_distance_matches_scipy_sqrtm_and_1d_closed_form():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(6, 6)), rng.normal(size=(6, 6))
    s1, s2 = a @ a.T + 0.1 * np.eye(6), b @ b.T + 0.1 * np.eye(6)
    m1, m2 = rng.normal(size=6), rng.normal(size=6)
    ref = np.sum((m1 - m2) ** 2) + np.trace(
        s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2).real
    )
    got = frechet_distance(*(torch.from_numpy(v) for v in (m1, s1, m2, s2)))
    assert got == pytest.approx(ref, rel=1e-6)
    # one dimension: (m1 - m2)^2 + (s1 - s2)^2 for standard deviations s
    one = frechet_distance(
        torch.tensor([1.0]),
        torch.tensor([[4.0]]),
        torch.tensor([-1.0]),
        torch.tensor([[9.0]]),
    )
    assert one == pytest.approx(4.0 + 1.0)
    mu, cov = gaussian_stats(torch.randn(500, 4))
    assert frechet_distance(mu, cov, mu, cov) == pytest.approx(0.0, abs=1e-8)


def test_gaussian_stats_is_numpy_mean_and_cov():
    f = torch.randn(50, 3, generator=torch.Generator().manual_seed(0))
    mu, cov = gaussian_stats(f)
    assert np.allclose(mu.numpy(), f.numpy().mean(0)) and np.allclose(
        cov.numpy(), np.cov(f.numpy().T)
    )


def test_class_coverage_and_report():
    assert class_coverage(torch.arange(10).repeat(5), 10) == pytest.approx(1.0)
    assert class_coverage(torch.full((30,), 2), 10) == pytest.approx(0.1)
    torch.manual_seed(0)
    judge = Judge(1, 10, width=8).eval()
    x = torch.rand(20, 1, 8, 8)
    rep = judge_report(
        judge,
        x,
        real=torch.rand(30, 1, 8, 8),
        labels=torch.zeros(20, dtype=torch.long),
    )
    assert set(rep) >= {
        "judge_confidence",
        "class_coverage",
        "feature_frechet_distance",
        "conditional_accuracy",
    }
    assert (
        0 <= rep["judge_confidence"] <= 1 and sum(rep["class_histogram"]) == 20
    )
    with pytest.raises(ValueError, match="confidence"):
        judge_report(judge, x, confidence=1.5)


def test_random_shift_translates_without_changing_content():
    x = torch.zeros(64, 1, 6, 6)
    x[:, :, 2:4, 2:4] = 1.0
    y = random_shift(x, 1, torch.Generator().manual_seed(0))
    assert torch.allclose(
        y.sum((1, 2, 3)), x.sum((1, 2, 3))
    )  # the blob moves, intact
    assert (
        len({tuple(torch.nonzero(img[0])[0].tolist()) for img in y}) == 9
    )  # all 9 shifts occur
    assert torch.equal(random_shift(x, 0), x)


# --------------------------------------------------------------------------- recipes
def test_vqvae_with_one_downsampling_keeps_a_finer_grid():
    model = VQVAE(3, hidden=16, num_codes=8, code_dim=4, downsamples=1)
    recon, codes, _ = model(torch.rand(2, 3, 16, 16))
    assert recon.shape == (2, 3, 16, 16) and codes.shape == (2, 8, 8)
    with pytest.raises(ValueError, match="downsamples"):
        VQVAE(downsamples=3)


def test_enlarge_is_the_map_that_makes_the_16px_digits():
    from vnotes.data import load_digits
    from vnotes.generative.recipes import enlarge

    small, big = load_digits("val", size=8), load_digits("val", size=16)
    assert torch.allclose(enlarge(small.images), big.images, atol=1e-6)


def test_recipes_build_deterministically_and_sample_in_range():
    from vnotes.generative import recipes

    a, b = recipes.build("vae", "smoke"), recipes.build("vae", "smoke")
    assert all(
        torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters())
    )
    data = {"train": type("D", (), {"images": torch.rand(40, 1, 16, 16)})()}
    for name in ("ae", "vae", "vqvae", "gan", "ddpm"):
        model = recipes.build(name, "smoke").eval()
        gauss = (
            recipes.ae_latent_gaussian(model, data) if name == "ae" else None
        )
        x = recipes.draw_samples(
            name, model, 4, "smoke", latent_gaussian=gauss
        )
        assert x.shape == (4, 1, 16, 16) and 0 <= x.min() and x.max() <= 1, (
            name
        )
    with pytest.raises(ValueError, match="unknown"):
        recipes.recipe("pixelcnn", "smoke")
    with pytest.raises(ValueError, match="latent_gaussian"):
        recipes.draw_samples("ae", recipes.build("ae", "smoke"), 2, "smoke")


def test_latent_gaussian_sampler_has_the_fitted_moments():
    from vnotes.generative.recipes import _mvn_sample

    codes = torch.randn(5000, 3) @ torch.tensor(
        [[2.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.5, 0.3]]
    ) + torch.tensor([1.0, -2.0, 0.5])
    dist = fit_latent_gaussian(codes)
    draws = _mvn_sample(dist, 20000, torch.Generator().manual_seed(0)).double()
    assert torch.allclose(draws.mean(0), dist.loc, atol=0.05)
    assert torch.allclose(
        torch.cov(draws.T), dist.covariance_matrix, rtol=0.06, atol=0.02
    )  # 20,000 draws


def test_dry_run_samplers_call_the_model_on_few_steps_but_keep_every_asked_step(
    monkeypatch,
):
    calls = []

    class Counting(_ToyEps):
        def forward(self, x, t, cond=None, cond_mask=None):
            calls.append(int(t[0]))
            return super().forward(x, t, cond, cond_mask)

    d = GaussianDiffusion(50, "linear")
    monkeypatch.setenv("VNOTES_DRY_RUN", "3")
    x, kept = d.sample(Counting(), (2, 1, 2, 2), keep=(49, 25, 0))
    assert calls == [49, 48, 47, 0] and set(kept) == {49, 25, 0}
    calls.clear()
    x, kept = d.ddim_sample(Counting(), (2, 1, 2, 2), steps=10, keep=(0,))
    assert len(calls) == 4 and calls[-1] == 0 and set(kept) == {0}
    assert torch.isfinite(x).all()
    monkeypatch.delenv("VNOTES_DRY_RUN")
    calls.clear()
    d.sample(Counting(), (2, 1, 2, 2))
    assert len(calls) == 50  # a real run: every step


def test_training_budget_counts_the_steps_training_runs():
    """The budget a table states for each model equals what its recipe's training actually runs (smoke)."""
    from vnotes.generative import recipes

    data = recipes.digits()
    n = len(data["train"].images)
    for name in ("ae", "vae", "vqvae", "gan", "ddpm"):
        budget = recipes.training_budget(name, "smoke", n)
        model = recipes.build(name, "smoke")
        history = recipes.train(
            name, model, data, "smoke", device="cpu", progress=False
        )
        if name == "vqvae":
            history, prior_history = history
            assert len(prior_history.step["loss"]) <= budget["prior_steps"]
        assert len(history.step["loss"]) == budget["steps"], name
    with pytest.raises(ValueError, match="unknown"):
        recipes.training_budget("vit", "smoke", n)
