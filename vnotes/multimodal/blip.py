"""BLIP: one text transformer that encodes, matches and writes captions, and CapFilt to clean its data (7d, 7e).

Li, Li, Xiong & Hoi (2022), "BLIP: Bootstrapping Language-Image Pre-training for Unified
Vision-Language Understanding and Generation".

**MED** (multimodal mixture of encoder-decoder) is one text transformer used three ways:

* *unimodal text encoder* -- bidirectional self-attention, no image; its [CLS] meets the image's
  [CLS] in the ITC loss (as in ALBEF);
* *image-grounded text encoder* -- adds cross-attention to the image tokens; the first token is
  [ENC] and its output answers ITM (hard negatives as in ALBEF);
* *image-grounded text decoder* -- causal self-attention, the same cross-attention and
  feed-forward layers; starts at [DEC] and is trained to write the caption (LM loss).

Encoder and decoder share every parameter except the self-attention layers, which is what each
layer of :class:`MEDLayer` holds twice. **CapFilt** then bootstraps the data: the *captioner*
(the decoder) writes a synthetic caption for every web image, the *filter* (the ITM head) drops
web and synthetic captions that do not match, and a new model is trained on what remains.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data import Vocabulary
from ..transformer import MLP, MultiHeadAttention, init_transformer_weights
from .albef import hard_negative_itm, momentum_itc
from .momentum import MomentumDistillation
from .towers import fit_width_to_tower, image_tokens

MED_MODES: tuple[str, ...] = ("text", "itm", "lm")

# how notebooks 7e (BLIP and CoCa) and 7f (CapFilt) train the minis at each scale
BLIP_TRAINING: dict[str, dict] = {
    "smoke": dict(
        n_train=128,
        epochs=1,
        batch_size=32,
        lr=1e-3,
        coca_epochs=1,
        coca_lr=2e-3,
        n_web=128,
        n_human=64,
        web_noise=0.5,
        finetune_epochs=1,
    ),
    "default": dict(
        n_train=6400,
        epochs=2,
        batch_size=64,
        lr=1e-3,
        coca_epochs=4,
        coca_lr=2e-3,
        n_web=3200,
        n_human=640,
        web_noise=0.5,
        # 6 until 2026-12: with a momentum model that moves (horizon 10 % of the steps), 6 epochs (60 steps)
        # left 7f's filter unsure, keeping 18 % of the right web captions; 12 keep 91 %
        finetune_epochs=12,
    ),
    "full": dict(
        n_train=50000,
        epochs=10,
        batch_size=128,
        lr=5e-4,
        coca_epochs=20,
        coca_lr=1e-3,
        n_web=50000,
        n_human=5000,
        web_noise=0.5,
        finetune_epochs=10,
    ),
}

# Should BLIP ramp alpha up over its first epoch, as ALBEF's code does (BLIP's own code ramps over its first two
# of 20 epochs)? Development runs of 7e's recipe at `default` (momentum horizon 10 % of the 200 steps), seeds
# 0-2, scored on 1,000 validation pairs (never the test pairs); AVX-512 EPYC, 2026-12-06. The book keeps the
# arm with the higher mean hard-ITM accuracy (the head CapFilt's filter uses, 7f): see ALPHA_RAMP.
BLIP_RAMP_TRIALS: dict[str, dict[str, list[float]]] = {
    "alpha constant": {
        "val_itm_hard_accuracy": [0.987, 0.932, 0.979],
        "val_r1_image_to_text": [0.999, 0.996, 0.991],
    },
    "alpha ramped over epoch 1": {
        "val_itm_hard_accuracy": [0.910, 0.962, 0.953],
        "val_r1_image_to_text": [0.998, 0.996, 0.995],
    },
}
# True when the ramped arm won on validation: what 7e and 7f pass to momentum.run_settings(ramp=...)
ALPHA_RAMP: bool = max(
    BLIP_RAMP_TRIALS,
    key=lambda arm: sum(BLIP_RAMP_TRIALS[arm]["val_itm_hard_accuracy"]),
).startswith("alpha ramped")

# BLIP with ViT-B/16 (Li et al., 2022, Sec. 4): BERT-base text transformer (12 layers), 256-d ITC, queue 57,600,
# momentum 0.995, alpha 0.4, label smoothing 0.1; and the book's mini
BLIP_CONFIGS: dict[str, dict] = {
    "BLIP-B": dict(
        dim=768,
        depth=12,
        num_heads=12,
        embed_dim=256,
        queue_size=57600,
        momentum=0.995,
        alpha=0.4,
        alpha_ramp_steps=0,  # the pages set it to the first epoch's steps
        max_len=35,
        label_smoothing=0.1,
    ),
    "mini": dict(
        dim=64,
        depth=2,
        num_heads=4,
        embed_dim=64,
        queue_size=512,
        momentum=0.995,
        alpha=0.4,
        alpha_ramp_steps=0,  # the pages set it to the first epoch's steps
        max_len=10,
        label_smoothing=0.1,
    ),
}


class MEDLayer(nn.Module):
    """One layer of BLIP's text transformer: two self-attentions (bidirectional for the encoders, causal for
    the decoder), one shared cross-attention to the image, one shared feed-forward network (pre-norm)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm_self = nn.LayerNorm(dim)
        self.self_attn = MultiHeadAttention(
            dim, num_heads
        )  # encoders: bidirectional
        self.norm_causal = nn.LayerNorm(dim)
        self.causal_self_attn = MultiHeadAttention(
            dim, num_heads
        )  # decoder: its own, causal
        self.norm_cross = nn.LayerNorm(dim)
        self.cross_attn = MultiHeadAttention(
            dim, num_heads
        )  # shared by ITM encoder and decoder
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = MLP(dim, int(dim * mlp_ratio))  # shared by all three

    def forward(
        self,
        x: Tensor,
        image: Tensor | None,
        padding: Tensor | None,
        causal: bool,
        need_weights: bool = False,
    ) -> Tensor:
        if (
            causal
        ):  # padding sits after [EOS], which a causal query never needs to see
            x = x + self.causal_self_attn(self.norm_causal(x), is_causal=True)
        else:
            x = x + self.self_attn(self.norm_self(x), key_padding_mask=padding)
        if image is not None:
            x = x + self.cross_attn(
                self.norm_cross(x), image, image, need_weights=need_weights
            )
        return x + self.mlp(self.norm_mlp(x))


class MEDText(nn.Module):
    """The text side of MED: embeddings, :class:`MEDLayer` stack, final norm; ``mode`` picks the functionality."""

    def __init__(
        self,
        vocab_size: int,
        dim: int,
        depth: int,
        num_heads: int,
        max_len: int,
        pad_id: int,
    ):
        super().__init__()
        self.pad_id, self.max_len = pad_id, max_len
        self.token_embed = nn.Embedding(vocab_size, dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, max_len, dim))
        self.layers = nn.ModuleList(
            MEDLayer(dim, num_heads) for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim)
        self.apply(init_transformer_weights)
        nn.init.normal_(self.token_embed.weight, std=0.02)
        nn.init.normal_(self.pos_embed, std=0.02)

    def forward(
        self,
        ids: Tensor,
        image: Tensor | None = None,
        mode: str = "text",
        need_weights: bool = False,
    ) -> Tensor:
        """``ids`` ``[B, L]`` -> ``[B, L, dim]``; ``image`` tokens are required for ``itm`` and ``lm``."""
        if mode not in MED_MODES:
            raise ValueError(f"mode={mode!r} is unknown; allowed: {MED_MODES}")
        if (mode == "text") != (image is None):
            raise ValueError(
                f"mode={mode!r} {'takes no' if mode == 'text' else 'needs'} image tokens"
            )
        L = ids.shape[1]
        if L > self.max_len:
            raise ValueError(f"{L} tokens exceed max_len={self.max_len}")
        x = self.token_embed(ids) + self.pos_embed[:, :L]
        padding = ids == self.pad_id
        for layer in self.layers:
            x = layer(
                x,
                image,
                padding,
                causal=mode == "lm",
                need_weights=need_weights,
            )
        return self.norm(x)


def with_first_token(ids: Tensor, token: int) -> Tensor:
    """Replace each sequence's first token ([BOS] from the tokenizer) by ``token`` ([CLS], [ENC] or [DEC])."""
    out = ids.clone()
    out[:, 0] = token
    return out


class BLIP(MomentumDistillation, nn.Module):
    """BLIP's pre-training model (Li et al., 2022): image encoder + MED, trained with ITC + ITM + LM.

    Task tokens: [CLS] starts the unimodal encoder's input, [ENC] the image-grounded encoder's
    (the vocabulary's ``[SEP]`` plays it), [DEC] = ``[BOS]`` the decoder's.
    """

    def __init__(
        self,
        vocab: Vocabulary,
        visual: nn.Module,
        dim: int = 64,
        depth: int = 2,
        num_heads: int = 4,
        embed_dim: int = 64,
        queue_size: int = 512,
        momentum: float = 0.995,
        alpha: float = 0.4,
        alpha_ramp_steps: int = 0,
        max_len: int = 10,
        label_smoothing: float = 0.1,
        seed: int = 0,
    ):
        super().__init__()
        self.vocab, self.alpha, self.label_smoothing = (
            vocab,
            alpha,
            label_smoothing,
        )
        self.cls_id, self.enc_id, self.dec_id = vocab.cls, vocab.sep, vocab.bos
        self.visual = visual
        self.text = MEDText(
            len(vocab), dim, depth, num_heads, max_len, vocab.pad
        )
        self.vision_proj = nn.Linear(dim, embed_dim)
        self.text_proj = nn.Linear(dim, embed_dim)
        self.temp = nn.Parameter(torch.tensor(0.07))
        self.itm_head = nn.Linear(dim, 2)
        self.lm_head = nn.Linear(dim, len(vocab), bias=False)
        self.lm_head.weight = (
            self.text.token_embed.weight
        )  # tied, as in BERT's LM head
        self.init_momentum(
            ("visual", "text", "vision_proj", "text_proj"),
            momentum,
            queue_size,
            embed_dim,
            alpha_ramp_steps,
        )
        self.generator = torch.Generator().manual_seed(seed)

    # ------------------------------------------------------------------ the three functionalities
    def encode_image(
        self, images: Tensor, momentum: bool = False
    ) -> tuple[Tensor, Tensor]:
        m = self.momentum_model if momentum else None
        tokens = image_tokens(
            m["visual"] if m else self.visual, images
        )  # [B, 1 + N, D]
        return tokens, F.normalize(
            (m["vision_proj"] if m else self.vision_proj)(tokens[:, 0]), dim=-1
        )

    def encode_text(self, ids: Tensor, momentum: bool = False) -> Tensor:
        """Unimodal text encoder: the normalised ITC embedding of [CLS] ``[B, E]``."""
        m = self.momentum_model if momentum else None
        h = (m["text"] if m else self.text)(
            with_first_token(ids, self.cls_id), mode="text"
        )
        return F.normalize(
            (m["text_proj"] if m else self.text_proj)(h[:, 0]), dim=-1
        )

    def itm_logits(
        self, images: Tensor, ids: Tensor, image_tokens_: Tensor | None = None
    ) -> Tensor:
        """Image-grounded text encoder: ``[B, 2]`` (mismatch, match) logits at [ENC]."""
        img = (
            self.encode_image(images)[0]
            if image_tokens_ is None
            else image_tokens_
        )
        return self.itm_head(
            self.text(with_first_token(ids, self.enc_id), img, mode="itm")[
                :, 0
            ]
        )

    def lm_logits(
        self, images: Tensor, ids: Tensor, image_tokens_: Tensor | None = None
    ) -> Tensor:
        """Image-grounded text decoder: next-token logits ``[B, L, vocab]`` for ``ids`` starting at [DEC]."""
        img = (
            self.encode_image(images)[0]
            if image_tokens_ is None
            else image_tokens_
        )
        return self.lm_head(
            self.text(with_first_token(ids, self.dec_id), img, mode="lm")
        )

    def similarity(self, images: Tensor, ids: Tensor) -> Tensor:
        """ITC cosine similarities ``[N_images, N_texts]``."""
        return self.encode_image(images)[1] @ self.encode_text(ids).T

    # ------------------------------------------------------------------ pre-training
    def forward(
        self,
        images: Tensor,
        ids: Tensor,
        text_id: Tensor,
        losses: tuple[str, ...] = ("itc", "itm", "lm"),
    ) -> tuple[Tensor, dict[str, Tensor]]:
        B = images.shape[0]
        with torch.no_grad():
            self.temp.clamp_(0.001, 0.5)
        img_tokens, img_feat = self.encode_image(images)
        parts: dict[str, Tensor] = {}
        sims = None
        if "itc" in losses or "itm" in losses:
            txt_feat = self.encode_text(ids)
            alpha = self.distill_alpha()
            with torch.no_grad():
                self.momentum_update()
                _, img_feat_m = self.encode_image(images, momentum=True)
                txt_feat_m = self.encode_text(ids, momentum=True)
            loss_itc, sim_i2t, sim_t2i = momentum_itc(
                img_feat,
                txt_feat,
                img_feat_m,
                txt_feat_m,
                text_id,
                self.queue,
                self.temp,
                alpha,
            )
            sims = (sim_i2t[:, :B], sim_t2i[:, :B])
            if "itc" in losses:
                parts["itc"] = loss_itc
        if "itm" in losses:
            img_idx, txt_idx, labels = hard_negative_itm(
                *sims, text_id, self.generator
            )
            logits = self.itm_logits(
                None, ids[txt_idx], image_tokens_=img_tokens[img_idx]
            )
            parts["itm"] = F.cross_entropy(logits, labels)
        if "lm" in losses:
            logits = self.lm_logits(
                None, ids[:, :-1], image_tokens_=img_tokens
            )  # predict token t+1
            targets = ids[:, 1:]
            # L_lm = cross-entropy with label smoothing 0.1, [PAD] ignored
            parts["lm"] = F.cross_entropy(
                logits.flatten(0, 1),
                targets.flatten(),
                ignore_index=self.vocab.pad,
                label_smoothing=self.label_smoothing,
            )
        if not parts:
            raise ValueError(
                f"losses={losses} names none of 'itc', 'itm', 'lm'"
            )
        loss = sum(parts.values())
        return loss, {k: v.detach() for k, v in parts.items()}

    # ------------------------------------------------------------------ captioning
    @torch.no_grad()
    def generate(
        self,
        images: Tensor,
        max_len: int | None = None,
        top_p: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Write captions: ``[B, L]`` ids starting at [DEC]; greedy, or nucleus sampling with ``top_p`` > 0."""
        return decode(
            lambda ids, img: self.lm_logits(None, ids, image_tokens_=img),
            self.encode_image(images)[0],
            self.vocab,
            max_len or self.text.max_len,
            top_p,
            generator,
        )


@torch.no_grad()
def decode(
    step_logits,
    image_tokens_: Tensor,
    vocab: Vocabulary,
    max_len: int,
    top_p: float = 0.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Autoregressive decoding from [BOS]: greedy (``top_p=0``) or nucleus sampling (Holtzman et al., 2020).

    ``step_logits(ids, image_tokens)`` returns ``[B, L, vocab]``; sequences stop growing at [EOS]
    (later positions are [PAD]).
    """
    if not 0.0 <= top_p <= 1.0:
        raise ValueError(f"top_p={top_p} must lie in [0, 1]")
    B = image_tokens_.shape[0]
    dev = image_tokens_.device
    ids = torch.full((B, 1), vocab.bos, dtype=torch.long, device=dev)
    done = torch.zeros(B, dtype=torch.bool, device=dev)
    for _ in range(max_len - 1):
        logits = step_logits(ids, image_tokens_)[:, -1].float()  # [B, vocab]
        logits[:, [vocab.pad, vocab.bos, vocab.cls, vocab.sep, vocab.mask]] = (
            float("-inf")
        )
        if top_p > 0:
            probs = F.softmax(logits, -1)
            sorted_p, order = probs.sort(-1, descending=True)
            # keep the smallest set of tokens whose probability reaches top_p
            keep = sorted_p.cumsum(-1) - sorted_p < top_p
            sorted_p = sorted_p * keep
            pick = torch.multinomial(
                sorted_p / sorted_p.sum(-1, keepdim=True),
                1,
                generator=generator,
            )
            nxt = order.gather(1, pick).squeeze(1)
        else:
            nxt = logits.argmax(-1)
        nxt = torch.where(done, torch.full_like(nxt, vocab.pad), nxt)
        ids = torch.cat([ids, nxt[:, None]], 1)
        done |= nxt == vocab.eos
        if done.all():
            break
    return ids


def build_blip(
    vocab: Vocabulary,
    visual: nn.Module,
    name: str = "mini",
    *,
    seed: int = 0,
    **overrides,
) -> BLIP:
    """A BLIP from :data:`BLIP_CONFIGS` around a pretrained image tower (the book passes its CLIP's)."""
    if name not in BLIP_CONFIGS:
        raise ValueError(
            f"name={name!r} is unknown; allowed: {sorted(BLIP_CONFIGS)}"
        )
    unknown = set(overrides) - set(BLIP_CONFIGS["mini"])
    if unknown:
        raise ValueError(
            f"unknown BLIP settings {sorted(unknown)}; allowed: {sorted(BLIP_CONFIGS['mini'])}"
        )
    cfg = fit_width_to_tower(
        {**BLIP_CONFIGS[name], **overrides}, visual, overrides
    )
    return BLIP(vocab, visual, seed=seed, **cfg)


def blip_step(losses: tuple[str, ...] = ("itc", "itm", "lm")):
    """A :func:`vnotes.fit` step: ``batch = (images, tokens, text_id)``; ``losses`` picks the objectives."""

    def step(
        model: BLIP, batch: tuple[Tensor, ...]
    ) -> tuple[Tensor, dict[str, Tensor]]:
        return model(batch[0], batch[1], batch[2], losses=losses)

    return step


# ----------------------------------------------------------------------------- CapFilt
def text_ids_of(texts: list[str], unknown_start: int = 100_000) -> Tensor:
    """Caption ids ((colour * 6 + shape) * 2 + size) of captions as text; unparseable ones get fresh ids."""
    from ..data import SHAPES, SIZES
    from .data import COLOUR_NAMES
    from .metrics import caption_attributes

    out = []
    for i, t in enumerate(texts):
        a = caption_attributes(t)
        if None in a.values() or len(t.split()) != 4:
            out.append(unknown_start + i)
        else:
            out.append(
                (
                    COLOUR_NAMES.index(a["colour"]) * len(SHAPES)
                    + SHAPES.index(a["shape"])
                )
                * len(SIZES)
                + SIZES.index(a["size"])
            )
    return torch.tensor(out)


@torch.no_grad()
def capfilt(
    model: BLIP,
    images: Tensor,
    ids: Tensor,
    top_p: float = 0.9,
    threshold: float = 0.5,
    batch_size: int = 256,
    seed: int = 0,
) -> dict[str, Tensor]:
    """BLIP's CapFilt (Li et al., 2022): the captioner writes one synthetic caption per web image (nucleus
    sampling), the filter keeps a web or synthetic caption only if its ITM match probability exceeds ``threshold``.

    Returns the synthetic caption ids ``[N, L]`` and the boolean masks ``keep_web``, ``keep_synthetic`` ``[N]``,
    with the ITM probabilities behind them.
    """
    was = model.training
    model.eval()
    g = torch.Generator().manual_seed(seed)
    L = ids.shape[1]
    synth, p_web, p_syn = [], [], []
    for i in range(0, len(images), batch_size):
        img = images[i : i + batch_size]
        tokens, _ = model.encode_image(img)
        gen = model.generate(img, max_len=L, top_p=top_p, generator=g)
        gen = torch.cat(
            [
                gen,
                torch.full(
                    (gen.shape[0], L - gen.shape[1]),
                    model.vocab.pad,
                    dtype=gen.dtype,
                ),
            ],
            1,
        )
        synth.append(gen)
        p_web.append(
            model.itm_logits(
                None, ids[i : i + batch_size], image_tokens_=tokens
            ).softmax(1)[:, 1]
        )
        p_syn.append(
            model.itm_logits(None, gen, image_tokens_=tokens).softmax(1)[:, 1]
        )
    model.train(was)
    p_web, p_syn = torch.cat(p_web), torch.cat(p_syn)
    return {
        "synthetic": torch.cat(synth),
        "p_web": p_web,
        "p_synthetic": p_syn,
        "keep_web": p_web > threshold,
        "keep_synthetic": p_syn > threshold,
    }


def bootstrapped_pairs(
    human, web, result: dict[str, Tensor], vocab: Vocabulary
) -> tuple[Tensor, Tensor, Tensor]:
    """CapFilt's new data set: the human-annotated pairs, the web pairs the filter kept, and the kept synthetic
    captions with their web images -> (images, caption ids, text ids)."""
    keep_web, keep_syn = result["keep_web"], result["keep_synthetic"]
    synthetic_id = text_ids_of([vocab.decode(r) for r in result["synthetic"]])
    images = torch.cat(
        [human.images, web.images[keep_web], web.images[keep_syn]]
    )
    tokens = torch.cat(
        [human.tokens, web.tokens[keep_web], result["synthetic"][keep_syn]]
    )
    text_id = torch.cat(
        [human.text_id, web.text_id[keep_web], synthetic_id[keep_syn]]
    )
    return images, tokens, text_id
