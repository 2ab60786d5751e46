"""Bridges from a frozen image encoder to a frozen language model: BLIP-2's Q-Former and LLaVA's projection (7f).

* **BLIP-2** (Li, Li, Savarese & Hoi, 2023): a *Q-Former* -- a small BERT whose learned *queries*
  cross-attend to the frozen image tokens -- is first trained on image--text pairs with three
  losses that share one set of weights and differ only in the self-attention mask (ITC, ITM,
  image-grounded generation), then its query outputs, projected linearly, are fed to the frozen
  language model as a soft prompt and trained with the LM loss. Few queries (here 8) summarise
  many image tokens.
* **LLaVA** (Liu, Li, Wu & Lee, 2023), its first stage: a single trained matrix ``W`` maps every
  frozen image token into the language model's word-embedding space; nothing else is trained.

Both feed :class:`vnotes.transformer.CausalLM`, trained here on the world's text with
:func:`lm_corpus` and then frozen. Its documents read ``[BOS] context [SEP] task``: the context is a
caption, the task either a question with its answer or ``describe`` followed by the caption. A
bridge succeeds when the image, in place of the caption, lets the frozen model do both.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data import Vocabulary
from ..transformer import (
    MLP,
    CausalLM,
    MultiHeadAttention,
    init_transformer_weights,
)
from .albef import hard_negative_itm
from .data import QuestionAnswers, make_qa
from .objectives import contrastive_loss, qformer_mask
from .towers import frozen_tokens


# how notebook 7g trains the language model, the Q-Former and the two bridges at each scale
BRIDGE_TRAINING: dict[str, dict] = {
    "smoke": dict(
        n_lm=256,
        lm_epochs=1,
        n_qa=128,
        stage1_epochs=1,
        epochs=1,
        n_test=64,
        batch_size=32,
    ),
    "default": dict(
        n_lm=6000,
        lm_epochs=10,
        n_qa=3000,
        stage1_epochs=2,
        epochs=4,
        n_test=500,
        batch_size=64,
    ),
    "full": dict(
        n_lm=50000,
        lm_epochs=20,
        n_qa=30000,
        stage1_epochs=10,
        epochs=10,
        n_test=2000,
        batch_size=128,
    ),
}

# BLIP-2 (Li et al., 2023): Q-Former = BERT-base (12 layers, width 768) with 32 queries, cross-attention every other
# layer, frozen ViT-g and OPT / FlanT5; LLaVA (Liu et al., 2023): frozen CLIP ViT-L/14 -> W -> Vicuna; and the minis
BRIDGE_CONFIGS: dict[str, dict] = {
    "BLIP-2 Q-Former": dict(
        dim=768, depth=12, num_queries=32, cross_attention_every=2
    ),
    "LLaVA projection": dict(
        image_dim=1024, lm_dim=4096, tokens="256 patch features"
    ),
    "mini Q-Former": dict(
        dim=64, depth=2, num_queries=8, cross_attention_every=2
    ),
    "mini projection": dict(
        image_dim=64, lm_dim=64, tokens="1 + 64 CLIP tokens"
    ),
}


# ----------------------------------------------------------------------------- the frozen language model
def lm_corpus(
    n: int,
    vocab: Vocabulary,
    *,
    seed: int = 0,
    split: str = "train",
    length: int = 24,
    qa_share: float = 0.5,
) -> Tensor:
    """``[n, length]`` text documents ``[BOS] caption [SEP] (question answer | describe caption) [EOS]``.

    Scenes hold one or two objects; a share ``qa_share`` of documents ask a question about the caption.
    Only text is produced (the scenes are drawn at 8 x 8 pixels and thrown away).
    """
    if not 0.0 <= qa_share <= 1.0:
        raise ValueError(f"qa_share={qa_share} must lie in [0, 1]")
    qa = make_qa(n, seed=seed, split=split, vocab=vocab, image_size=8)
    g = torch.Generator().manual_seed(seed)
    ask = torch.rand(n, generator=g) < qa_share
    docs = [
        f"{cap} [SEP] {q} {a}" if k else f"{cap} [SEP] describe {cap}"
        for cap, q, a, k in zip(
            qa.captions, qa.question_texts, qa.answer_texts, ask.tolist()
        )
    ]
    ids = vocab.encode_batch(docs, length, bos=True, eos=True)
    longest = max(len(vocab.split(d)) + 2 for d in docs)
    if longest > length:
        raise ValueError(
            f"length={length} cuts documents short; the longest has {longest} tokens"
        )
    return ids


def prefix_logits(lm: CausalLM, prefix: Tensor, ids: Tensor) -> Tensor:
    """Run a (frozen) causal LM on ``[ids[:, :1]; prefix; ids[:, 1:]]`` and return logits at the text positions.

    ``prefix`` ``[B, P, dim]`` is a soft prompt in the LM's embedding space, inserted right after
    [BOS] and given the positions 1..P, so the text that follows sits where it would after a context.
    Returns ``[B, L, vocab]`` for the L text positions (the prefix positions are dropped).
    """
    B, P, _ = prefix.shape
    L = ids.shape[1]
    if 1 + P + L - 1 > lm.max_len:
        raise ValueError(
            f"prefix of {P} + {L} tokens exceeds the LM's max_len={lm.max_len}"
        )
    first = lm.embed(ids[:, :1], start=0)  # [B, 1, dim]
    soft = prefix + lm.pos_embed(
        torch.arange(1, 1 + P, device=ids.device)
    )  # [B, P, dim]
    rest = lm.embed(ids[:, 1:], start=1 + P)  # [B, L - 1, dim]
    x = torch.cat([first, soft, rest], 1)
    for block in lm.blocks:
        x = block(x, is_causal=True)
    logits = lm.lm_head(lm.norm(x))
    return torch.cat([logits[:, :1], logits[:, 1 + P :]], 1)


def freeze(module: nn.Module) -> nn.Module:
    """Turn off gradients and switch to eval mode (a frozen part of a bigger model)."""
    for p in module.parameters():
        p.requires_grad_(False)
    return module.eval()


# ----------------------------------------------------------------------------- BLIP-2's Q-Former
class QFormerLayer(nn.Module):
    """One Q-Former layer (Li et al., 2023): self-attention shared by queries and text, cross-attention to the
    image for the queries only (every other layer), and separate feed-forward networks for queries and text."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        cross_attention: bool,
        mlp_ratio: float = 4.0,
    ):
        super().__init__()
        self.norm_self = nn.LayerNorm(dim)
        self.self_attn = MultiHeadAttention(dim, num_heads)
        self.cross_attention = cross_attention
        if cross_attention:
            self.norm_cross = nn.LayerNorm(dim)
            self.cross_attn = MultiHeadAttention(dim, num_heads)
        self.norm_query_mlp, self.query_mlp = (
            nn.LayerNorm(dim),
            MLP(dim, int(dim * mlp_ratio)),
        )
        self.norm_text_mlp, self.text_mlp = (
            nn.LayerNorm(dim),
            MLP(dim, int(dim * mlp_ratio)),
        )

    def forward(
        self,
        x: Tensor,
        num_queries: int,
        image: Tensor,
        attn_mask: Tensor | None,
        padding: Tensor | None,
    ) -> Tensor:
        x = x + self.self_attn(
            self.norm_self(x), key_padding_mask=padding, attn_mask=attn_mask
        )
        q, t = x[:, :num_queries], x[:, num_queries:]
        if self.cross_attention:
            q = q + self.cross_attn(self.norm_cross(q), image, image)
        q = q + self.query_mlp(self.norm_query_mlp(q))
        t = t + self.text_mlp(self.norm_text_mlp(t)) if t.shape[1] else t
        return torch.cat([q, t], 1)


class QFormer(nn.Module):
    """BLIP-2's Querying Transformer (Li et al., 2023): learned queries read a frozen image encoder.

    :meth:`queries` gives the query outputs alone (stage 2 feeds them to the LM); :meth:`stage1_loss`
    trains with ITC (best query against the text [CLS]), ITM (averaged over queries, hard negatives)
    and ITG (text generated from the queries under the multimodal causal mask).
    """

    def __init__(
        self,
        vocab: Vocabulary,
        image_dim: int,
        dim: int = 64,
        depth: int = 2,
        num_heads: int = 4,
        num_queries: int = 8,
        embed_dim: int = 64,
        max_len: int = 16,
        seed: int = 0,
    ):
        super().__init__()
        self.vocab, self.num_queries, self.max_len = (
            vocab,
            num_queries,
            max_len,
        )
        self.query_tokens = nn.Parameter(
            torch.randn(1, num_queries, dim) * 0.02
        )
        self.image_in = (
            nn.Linear(image_dim, dim) if image_dim != dim else nn.Identity()
        )
        self.token_embed = nn.Embedding(len(vocab), dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, max_len, dim))
        self.layers = nn.ModuleList(
            QFormerLayer(dim, num_heads, cross_attention=i % 2 == 0)
            for i in range(depth)
        )
        self.norm = nn.LayerNorm(dim)
        self.query_proj, self.text_proj = (
            nn.Linear(dim, embed_dim),
            nn.Linear(dim, embed_dim),
        )
        self.temp = nn.Parameter(torch.tensor(0.07))
        self.itm_head = nn.Linear(dim, 2)
        self.lm_head = nn.Linear(dim, len(vocab), bias=False)
        self.apply(init_transformer_weights)
        nn.init.normal_(self.token_embed.weight, std=0.02)
        nn.init.normal_(self.pos_embed, std=0.02)
        self.lm_head.weight = self.token_embed.weight
        self.generator = torch.Generator().manual_seed(seed)

    def run(self, image: Tensor, ids: Tensor | None, mode: str) -> Tensor:
        """``[queries; text]`` through every layer under the ``mode`` mask -> ``[B, Q + L, dim]``."""
        B = image.shape[0]
        image = self.image_in(image)
        x = self.query_tokens.expand(B, -1, -1)
        padding = None
        mask = None
        if ids is not None:
            L = ids.shape[1]
            x = torch.cat(
                [x, self.token_embed(ids) + self.pos_embed[:, :L]], 1
            )
            padding = torch.cat(
                [
                    torch.zeros(
                        B,
                        self.num_queries,
                        dtype=torch.bool,
                        device=ids.device,
                    ),
                    ids == self.vocab.pad,
                ],
                1,
            )
            mask = qformer_mask(self.num_queries, L, mode, device=ids.device)
        for layer in self.layers:
            x = layer(x, self.num_queries, image, mask, padding)
        return self.norm(x)

    def queries(self, image: Tensor) -> Tensor:
        """The query outputs ``[B, Q, dim]`` for frozen image tokens ``[B, N, image_dim]``."""
        return self.run(image, None, "itc")

    def stage1_loss(
        self, image: Tensor, ids: Tensor, text_id: Tensor
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """ITC + ITM + ITG of BLIP-2's representation stage (``ids`` start with [BOS])."""
        Q = self.num_queries
        # ITC: uni-modal mask; text [CLS] = the first text token (here [CLS] replaces [BOS])
        cls_ids = ids.clone()
        cls_ids[:, 0] = self.vocab.cls
        h = self.run(image, cls_ids, "itc")
        q_feat = F.normalize(self.query_proj(h[:, :Q]), dim=-1)  # [B, Q, E]
        t_feat = F.normalize(self.text_proj(h[:, Q]), dim=-1)  # [B, E]
        # s(I, T) = max_q <z_q, t> / tau
        sim_q = torch.einsum("iqe,je->ijq", q_feat, t_feat)  # [B, B, Q]
        sim_i2t = sim_q.max(-1).values / self.temp
        same = (text_id[:, None] == text_id[None]).float()
        targets = same / same.sum(1, keepdim=True)
        loss_itc = contrastive_loss(sim_i2t, sim_i2t.T, targets, targets)
        # ITM: bi-directional mask; logits averaged over the query outputs
        img_idx, txt_idx, labels = hard_negative_itm(
            sim_i2t.detach(), sim_i2t.T.detach(), text_id, self.generator
        )
        enc_ids = ids[txt_idx].clone()
        enc_ids[:, 0] = self.vocab.cls
        h = self.run(image[img_idx], enc_ids, "itm")
        itm_logits = self.itm_head(h[:, :Q]).mean(1)
        loss_itm = F.cross_entropy(itm_logits, labels)
        # ITG: multimodal causal mask; the text reads the queries, never the image directly
        h = self.run(image, ids[:, :-1], "itg")
        logits = self.lm_head(h[:, Q:])
        loss_itg = F.cross_entropy(
            logits.flatten(0, 1),
            ids[:, 1:].flatten(),
            ignore_index=self.vocab.pad,
            label_smoothing=0.1,
        )
        loss = loss_itc + loss_itm + loss_itg
        return loss, {
            "itc": loss_itc.detach(),
            "itm": loss_itm.detach(),
            "itg": loss_itg.detach(),
        }


class QFormerStage1(nn.Module):
    """BLIP-2's first stage: the Q-Former learns from image--text pairs while the image encoder stays frozen."""

    def __init__(self, visual: nn.Module, qformer: QFormer):
        super().__init__()
        self.visual = freeze(visual)
        self.qformer = qformer

    def train(self, mode: bool = True) -> "QFormerStage1":
        super().train(mode)
        self.visual.eval()
        return self

    def frozen_image_tokens(self, images: Tensor) -> Tensor:
        """:func:`frozen_tokens` of this model's tower."""
        return frozen_tokens(self.visual, images)

    def forward(
        self, images: Tensor, ids: Tensor, text_id: Tensor
    ) -> tuple[Tensor, dict[str, Tensor]]:
        tokens = self.frozen_image_tokens(images)
        return self.qformer.stage1_loss(tokens, ids, text_id)


def stage1_step(
    model: QFormerStage1, batch: tuple[Tensor, ...]
) -> tuple[Tensor, dict[str, Tensor]]:
    """A :func:`vnotes.fit` step: ``batch = (images or their frozen tokens, caption ids, text_id)``."""
    return model(batch[0], batch[1], batch[2])


def text_index(texts: list[str]) -> Tensor:
    """Equal texts get equal numbers (first-seen order): the ``text_id`` of free-form captions."""
    seen: dict[str, int] = {}
    return torch.tensor([seen.setdefault(t, len(seen)) for t in texts])


# ----------------------------------------------------------------------------- the two bridges
class FrozenVisionLanguage(nn.Module):
    """A frozen image encoder and a frozen language model joined by a trainable ``bridge``.

    ``bridge="qformer"`` (BLIP-2): Q-Former queries -> linear layer -> soft prompt of Q tokens.
    ``bridge="linear"`` (LLaVA): every image token -> ``W`` -> soft prompt of 1 + N tokens.
    """

    def __init__(
        self,
        visual: nn.Module,
        lm: CausalLM,
        bridge: str,
        image_dim: int,
        qformer: QFormer | None = None,
    ):
        super().__init__()
        if bridge not in ("qformer", "linear"):
            raise ValueError(
                f"bridge={bridge!r} is unknown; allowed: 'qformer', 'linear'"
            )
        if bridge == "qformer" and qformer is None:
            raise ValueError("bridge='qformer' needs a QFormer")
        self.bridge_kind = bridge
        self.visual = freeze(visual)
        self.lm = freeze(lm)
        lm_dim = lm.token_embed.weight.shape[1]
        if bridge == "qformer":
            self.qformer = qformer
            self.projection = nn.Linear(
                qformer.query_tokens.shape[-1], lm_dim
            )  # BLIP-2's fully connected layer
        else:
            self.projection = nn.Linear(image_dim, lm_dim)  # LLaVA's W

    def train(self, mode: bool = True) -> "FrozenVisionLanguage":
        super().train(mode)
        self.visual.eval()  # frozen parts stay in eval mode (BatchNorm statistics never move)
        self.lm.eval()
        return self

    def frozen_image_tokens(self, images: Tensor) -> Tensor:
        """:func:`frozen_tokens` of this model's tower."""
        return frozen_tokens(self.visual, images)

    def prefix(self, images: Tensor) -> Tensor:
        """The soft prompt ``[B, P, lm_dim]``: P = number of queries (Q-Former) or 1 + N (linear)."""
        tokens = self.frozen_image_tokens(images)
        if self.bridge_kind == "qformer":
            return self.projection(self.qformer.queries(tokens))
        # H_v = W Z_v  (LLaVA, Eq. 1)
        return self.projection(tokens)

    def logits(self, images: Tensor, ids: Tensor) -> Tensor:
        return prefix_logits(self.lm, self.prefix(images), ids)

    @torch.no_grad()
    def complete(
        self, images: Tensor, prompt: Tensor, max_new_tokens: int
    ) -> Tensor:
        """Greedy continuation of ``prompt`` ``[B, Lp]`` after the image's soft prompt -> ``[B, Lp + new]``."""
        soft = self.prefix(images)
        ids = prompt
        for _ in range(max_new_tokens):
            nxt = prefix_logits(self.lm, soft, ids)[:, -1].argmax(
                -1, keepdim=True
            )
            ids = torch.cat([ids, nxt], 1)
        return ids


def bridge_batch(
    qa: QuestionAnswers, vocab: Vocabulary, length: int = 16
) -> tuple[Tensor, Tensor, Tensor]:
    """Training sequences for a bridge: per scene one captioning and one question document.

    Returns (image index ``[2N]``, ids ``[2N, length]`` = ``[BOS] [SEP] task``, loss mask ``[2N, length]``
    -- True on the tokens the model must produce: the caption after ``describe``, or the answer, and [EOS]).
    """
    n = len(qa)
    docs, first_target = [], []
    for cap, q, a in zip(qa.captions, qa.question_texts, qa.answer_texts):
        docs.append(f"[SEP] describe {cap}")
        first_target.append(3)  # [BOS] [SEP] describe | caption ...
    for q, a in zip(qa.question_texts, qa.answer_texts):
        docs.append(f"[SEP] {q} {a}")
        first_target.append(2 + len(vocab.split(q)))
    ids = vocab.encode_batch(docs, length, bos=True, eos=True)
    pos = torch.arange(length)[None]
    target = (pos >= torch.tensor(first_target)[:, None]) & (ids != vocab.pad)
    return torch.cat([torch.arange(n), torch.arange(n)]), ids, target


def bridge_step(
    model: FrozenVisionLanguage, batch: tuple[Tensor, ...]
) -> tuple[Tensor, dict[str, Tensor]]:
    """A :func:`vnotes.fit` step: LM loss on the target tokens only; ``batch = (images or their frozen tokens, ids, target_mask)``."""
    images, ids, target = batch
    logits = model.logits(images, ids[:, :-1])  # predict token t+1
    mask = target[:, 1:]
    loss = F.cross_entropy(logits[mask], ids[:, 1:][mask])
    return loss, {
        "token_acc": (logits[mask].argmax(-1) == ids[:, 1:][mask])
        .float()
        .mean()
        .detach()
    }


@torch.no_grad()
def vqa_accuracy(
    model: FrozenVisionLanguage, qa: QuestionAnswers, batch_size: int = 256
) -> float:
    """Share of questions whose greedy one-word answer is right (exact match); questions batched by length."""
    vocab = qa.vocab
    prompts = [vocab.encode(f"[SEP] {q}", bos=True) for q in qa.question_texts]
    right = 0
    for length in sorted({len(p) for p in prompts}):
        rows = [i for i, p in enumerate(prompts) if len(p) == length]
        for k in range(0, len(rows), batch_size):
            sel = torch.tensor(rows[k : k + batch_size])
            ids = torch.tensor([prompts[i] for i in sel.tolist()])
            out = model.complete(qa.images[sel], ids, 1)
            right += (out[:, -1] == qa.answer[sel]).sum().item()
    return right / len(qa)


@torch.no_grad()
def lm_reading_accuracy(lm: CausalLM, qa: QuestionAnswers) -> float:
    """The frozen LM's answers when it reads the true caption instead of the image: a ceiling for any bridge."""
    vocab = qa.vocab
    prompts = [
        vocab.encode(f"{c} [SEP] {q}", bos=True)
        for c, q in zip(qa.captions, qa.question_texts)
    ]
    right = 0
    for length in sorted({len(p) for p in prompts}):
        rows = [i for i, p in enumerate(prompts) if len(p) == length]
        ids = torch.tensor([prompts[i] for i in rows])
        out = lm.generate(ids, 1)
        right += (out[:, -1] == qa.answer[torch.tensor(rows)]).sum().item()
    return right / len(qa)


@torch.no_grad()
def captions(
    model: FrozenVisionLanguage,
    images: Tensor,
    vocab: Vocabulary,
    max_words: int = 11,
) -> list[str]:
    """Greedy captions written by the frozen LM after ``[BOS] <image> [SEP] describe``."""
    prompt = torch.tensor([vocab.encode("[SEP] describe", bos=True)]).expand(
        images.shape[0], -1
    )
    out = model.complete(images, prompt, max_words)
    return [vocab.decode(row[prompt.shape[1] :]) for row in out]
