"""DALL·E 2 in miniature: caption -> CLIP text embedding -> prior -> CLIP image embedding -> diffusion decoder (7i).

Ramesh, Dhariwal, Nichol, Chu & Chen (2022), "Hierarchical Text-Conditional Image Generation with CLIP
Latents" (unCLIP). Two generative models sit on a frozen CLIP:

* the **prior** p(z_i | y) produces a CLIP *image* embedding from the caption's CLIP *text*
  embedding. The paper's diffusion prior is a Transformer predicting the clean embedding; ours is
  an MLP denoiser on the 64-d embedding, trained and sampled with the generative chapter's
  :class:`~vnotes.generative.GaussianDiffusion` (noise prediction, an equivalent parameterisation);
* the **decoder** p(x | z_i) is the generative chapter's diffusion :class:`~vnotes.generative.UNet`
  conditioned on the image embedding (``cond_dim``), with the embedding dropped 10 % of the time so
  classifier-free guidance can be used (as in the paper).

Chained, ``caption -> z_t -> z_i -> x`` draws an image for a caption. The generative chapter's
yardstick (a classifier trained on real images, :func:`~vnotes.generative.train_judge`) checks
whether the drawn shape and colour are the ones asked for.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data import Vocabulary
from ..generative import GaussianDiffusion, UNet, from_unit, to_unit
from ..generative.diffusion import timestep_embedding
from .clip import CLIP, embed_all

# how notebook 7i trains the prior and the decoder at each scale (images drawn at ``image_size`` pixels)
DALLE2_TRAINING: dict[str, dict] = {
    "smoke": dict(n_train=256, image_size=16, base_channels=8, decoder_epochs=1, prior_epochs=2, batch_size=64,
                  lr=2e-3, timesteps=100, sample_steps=10, guidance=1.0, judge_epochs=1, n_judge=512),
    "default": dict(n_train=6000, image_size=16, base_channels=16, decoder_epochs=9, prior_epochs=20,
                    batch_size=64, lr=2e-3, timesteps=1000, sample_steps=60, guidance=2.0, judge_epochs=4,
                    n_judge=6000),
    "full": dict(n_train=50000, image_size=32, base_channels=64, decoder_epochs=100, prior_epochs=200,
                 batch_size=128, lr=2e-4, timesteps=1000, sample_steps=100, guidance=2.0, judge_epochs=20,
                 n_judge=20000),
}

# the paper's components (Ramesh et al., 2022, Table 3 and Sec. 2), for reference
DALLE2_PAPER: dict[str, dict] = {
    "CLIP": dict(model="ViT-H/16", embedding=1024),
    "diffusion prior": dict(model="decoder-only Transformer", width=2048, layers=24, target="clean z_i (MSE)"),
    "decoder": dict(model="GLIDE-style U-Net, 3.5B", resolution=64, cond="z_i projected to 4 tokens + time"),
    "upsamplers": dict(stages="64 -> 256 -> 1024"),
}


class PriorMLP(nn.Module):
    """eps_theta(z_t, t, y) for the diffusion prior: an MLP over [noised image embedding, step, text embedding]."""

    def __init__(self, embed_dim: int = 64, hidden: int = 256, depth: int = 3):
        super().__init__()
        self.embed_dim = embed_dim
        self.cond_embed = nn.Linear(embed_dim, hidden)
        self.null_cond = nn.Parameter(torch.zeros(hidden))                    # "no caption" (guidance)
        self.time_embed = nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU())
        self.inp = nn.Linear(embed_dim, hidden)
        self.blocks = nn.ModuleList(nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, hidden), nn.SiLU(),
                                                  nn.Linear(hidden, hidden)) for _ in range(depth))
        self.out = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, embed_dim))
        self.hidden = hidden

    def forward(self, x: Tensor, t: Tensor, cond: Tensor | None = None, cond_mask: Tensor | None = None) -> Tensor:
        """``x`` ``[B, D]`` noised embeddings, ``t`` ``[B]`` steps, ``cond`` ``[B, D]`` text embeddings -> noise ``[B, D]``."""
        c = self.null_cond.expand(x.shape[0], -1) if cond is None else self.cond_embed(cond)
        if cond is not None and cond_mask is not None:
            c = torch.where(cond_mask[:, None], c, self.null_cond.expand_as(c))
        h = self.inp(x) + self.time_embed(timestep_embedding(t, self.hidden)) + c
        for block in self.blocks:
            h = h + block(h)
        return self.out(h)


# the embeddings are unit vectors of D dimensions; scaled by sqrt(D) their components have unit variance,
# the scale a diffusion process with unit-variance noise expects
def embedding_to_diffusion(z: Tensor) -> Tensor:
    return z * z.shape[-1] ** 0.5


def diffusion_to_embedding(x: Tensor) -> Tensor:
    return F.normalize(x, dim=-1)


class DALLE2(nn.Module):
    """unCLIP (Ramesh et al., 2022) around a frozen CLIP: a diffusion prior and a diffusion decoder."""

    def __init__(self, clip: CLIP, vocab: Vocabulary, image_size: int = 16, base_channels: int = 16,
                 timesteps: int = 1000, embed_dim: int = 64):
        super().__init__()
        self.clip, self.vocab, self.image_size = clip.eval(), vocab, image_size
        for p in self.clip.parameters():
            p.requires_grad_(False)
        self.prior = PriorMLP(embed_dim)
        mults = (1, 2) if image_size <= 16 else (1, 2, 2)
        self.decoder = UNet(3, base_channels, cond_dim=embed_dim, channel_mults=mults,
                            attention_resolutions=(image_size // 2,), image_size=image_size)
        self.prior_diffusion = GaussianDiffusion(timesteps, "cosine", cond_drop_prob=0.1, clip_denoised=False)
        self.decoder_diffusion = GaussianDiffusion(timesteps, "cosine", cond_drop_prob=0.1)

    def train(self, mode: bool = True) -> "DALLE2":
        super().train(mode)
        self.clip.eval()
        return self

    def text_embedding(self, captions: list[str]) -> Tensor:
        ids = self.vocab.encode_batch(captions, self.clip.text.max_len, bos=True, eos=True)
        return embed_all(self.clip, ids=ids)[1]

    def image_embedding(self, images: Tensor) -> Tensor:
        return embed_all(self.clip, images=images)[0]

    def shrink(self, images: Tensor) -> Tensor:
        """Images at the decoder's resolution (area averaging)."""
        if images.shape[-1] == self.image_size:
            return images
        return F.interpolate(images, size=(self.image_size, self.image_size), mode="area")

    def prior_loss(self, text_emb: Tensor, image_emb: Tensor) -> Tensor:
        """Diffusion loss of the prior: noise z_i, predict the noise given z_t, t and the caption's z_t."""
        return self.prior_diffusion.loss(self.prior, embedding_to_diffusion(image_emb), text_emb)

    def decoder_loss(self, images: Tensor, image_emb: Tensor) -> Tensor:
        """Diffusion loss of the decoder on images in [0, 1] at the decoder's resolution."""
        # the condition is scaled like the prior's targets, so its components have unit variance
        return self.decoder_diffusion.loss(self.decoder, from_unit(images), embedding_to_diffusion(image_emb))

    @torch.no_grad()
    def sample_image_embedding(self, text_emb: Tensor, steps: int, guidance: float = 0.0,
                               generator: torch.Generator | None = None) -> Tensor:
        x = self.prior_diffusion.ddim_sample(self.prior, (text_emb.shape[0], text_emb.shape[1]), steps, cond=text_emb,
                                             guidance_scale=guidance, generator=generator)
        return diffusion_to_embedding(x)

    @torch.no_grad()
    def decode(self, image_emb: Tensor, steps: int, guidance: float = 0.0,
               generator: torch.Generator | None = None) -> Tensor:
        """Images in [0, 1] drawn from CLIP image embeddings."""
        shape = (image_emb.shape[0], 3, self.image_size, self.image_size)
        x = self.decoder_diffusion.ddim_sample(self.decoder, shape, steps, cond=embedding_to_diffusion(image_emb),
                                               guidance_scale=guidance, generator=generator)
        return to_unit(x)

    @torch.no_grad()
    def generate(self, captions: list[str], steps: int = 40, guidance: float = 1.0,
                 generator: torch.Generator | None = None) -> Tensor:
        """caption -> CLIP text embedding -> prior -> CLIP image embedding -> decoder -> image ``[B, 3, s, s]``."""
        was = self.training
        self.eval()
        z_t = self.text_embedding(captions)
        z_i = self.sample_image_embedding(z_t, steps, guidance, generator)
        images = self.decode(z_i, steps, guidance, generator)
        self.train(was)
        return images


def prior_step(model: DALLE2, batch: tuple[Tensor, ...]) -> Tensor:
    """A :func:`vnotes.fit` step for the prior: ``batch = (text embeddings, image embeddings)``."""
    return model.prior_loss(batch[0], batch[1])


def decoder_step(model: DALLE2, batch: tuple[Tensor, ...]) -> Tensor:
    """A :func:`vnotes.fit` step for the decoder: ``batch = (images at the decoder's size, image embeddings)``."""
    return model.decoder_loss(batch[0], batch[1])
