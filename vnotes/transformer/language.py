"""Transformers on text (chapter 4, ``chapters/04b_language``): a GPT-style model with a KV cache, and BERT.

* :class:`CausalLM` -- decoder-only language model (Radford et al., 2018) with :meth:`CausalLM.generate`
  and a KV cache
* :class:`MaskedLM` -- a BERT encoder (Devlin et al., 2019) with the masked-language-model head;
  trained without next-sentence prediction and with dynamic masking as in RoBERTa (Liu et al., 2019)
* :func:`mask_tokens` -- BERT's corruption: 15% of tokens chosen, 80% -> [MASK], 10% -> random, 10% kept
* :func:`caption_corpus` -- the toy world's captions as token ids
* :func:`time_generation` -- seconds to generate with and without the cache
"""

from __future__ import annotations

import re
import time

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .attention import KVCache, TransformerBlock, init_transformer_weights
from ..scales import dry_cap, dry_iter


class CausalLM(nn.Module):
    """A decoder-only Transformer language model, p(x_t | x_<t), as in GPT (Radford et al., 2018).

    Token and learned position embeddings, pre-norm causal blocks, a final LayerNorm and an
    output layer tied to the token embedding (Press & Wolf, 2017).
    """

    def __init__(
        self,
        vocab_size: int,
        dim: int = 64,
        depth: int = 2,
        num_heads: int = 4,
        max_len: int = 32,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
    ):
        super().__init__()
        if vocab_size < 2:
            raise ValueError(f"vocab_size={vocab_size} must be at least 2")
        if max_len < 1:
            raise ValueError(f"max_len={max_len} must be at least 1")
        self.vocab_size, self.max_len = vocab_size, max_len
        self.token_embed = nn.Embedding(vocab_size, dim)
        self.pos_embed = nn.Embedding(max_len, dim)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            TransformerBlock(dim, num_heads, mlp_ratio, dropout)
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim)
        self.lm_head = nn.Linear(dim, vocab_size, bias=False)
        self.apply(init_transformer_weights)
        nn.init.normal_(self.token_embed.weight, std=0.02)
        nn.init.normal_(self.pos_embed.weight, std=0.02)
        self.lm_head.weight = self.token_embed.weight  # weight tying

    def embed(self, ids: Tensor, start: int = 0) -> Tensor:
        """Token plus position embeddings for ``ids`` ``[B, L]`` at positions start..start+L-1 -> ``[B, L, dim]``."""
        L = ids.shape[1]
        if start + L > self.max_len:
            raise ValueError(
                f"positions up to {start + L} exceed max_len={self.max_len}"
            )
        pos = torch.arange(start, start + L, device=ids.device)
        return self.drop(self.token_embed(ids) + self.pos_embed(pos))

    def forward(
        self,
        ids: Tensor,
        key_padding_mask: Tensor | None = None,
        need_weights: bool = False,
        kv_caches: list[KVCache] | None = None,
    ) -> Tensor:
        """Next-token logits ``[B, L, vocab]`` for ``ids`` ``[B, L]`` (with ``kv_caches``: the new tokens only)."""
        start = kv_caches[0].length if kv_caches is not None else 0
        x = self.embed(ids, start)
        for i, block in enumerate(self.blocks):
            x = block(
                x,
                key_padding_mask=key_padding_mask,
                is_causal=True,
                need_weights=need_weights,
                kv_cache=kv_caches[i] if kv_caches is not None else None,
            )
        return self.lm_head(self.norm(x))

    @torch.no_grad()
    def generate(
        self,
        ids: Tensor,
        max_new_tokens: int,
        use_cache: bool = True,
        temperature: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Extend ``ids`` ``[B, L]`` by ``max_new_tokens``: greedy when temperature is 0, else sampled.

        With ``use_cache`` each step feeds only the newest token and reuses the cached keys and
        values of all earlier positions; without it each step re-runs the whole prefix.
        """
        if max_new_tokens < 0:
            raise ValueError(
                f"max_new_tokens={max_new_tokens} must be non-negative"
            )
        if temperature < 0:
            raise ValueError(f"temperature={temperature} must be non-negative")
        if ids.shape[1] + max_new_tokens > self.max_len:
            raise ValueError(
                f"prompt length {ids.shape[1]} + max_new_tokens={max_new_tokens} "
                f"exceeds max_len={self.max_len}"
            )
        was_training = self.training
        self.eval()
        caches = [KVCache() for _ in self.blocks] if use_cache else None
        out = ids
        step_input = ids
        for _ in range(max_new_tokens):
            logits = (
                self(step_input, kv_caches=caches) if use_cache else self(out)
            )
            logits = logits[:, -1]  # [B, vocab]
            if temperature == 0.0:
                next_id = logits.argmax(-1, keepdim=True)
            else:
                probs = torch.softmax(logits / temperature, dim=-1)
                next_id = torch.multinomial(probs, 1, generator=generator)
            out = torch.cat([out, next_id], dim=1)
            step_input = next_id
        self.train(was_training)
        return out


# --------------------------------------------------------------------------- BERT
def mask_tokens(
    ids: Tensor,
    maskable: Tensor,
    *,
    mask_id: int,
    random_ids: tuple[int, int],
    prob: float = 0.15,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """BERT's masked-LM corruption (Devlin et al., 2019): returns ``(inputs, labels)``.

    Each ``maskable`` position is chosen with probability ``prob``; a chosen token becomes
    [MASK] 80% of the time, a random token from ``random_ids = (low, high)`` 10%, and stays
    itself 10%. ``labels`` hold the original token where chosen and -100 (ignored) elsewhere.
    """
    if not 0.0 < prob < 1.0:
        raise ValueError(f"prob={prob} must lie in (0, 1)")
    if maskable.shape != ids.shape or maskable.dtype != torch.bool:
        raise ValueError(
            f"maskable must be a bool tensor shaped like ids {tuple(ids.shape)}"
        )
    low, high = random_ids
    if not 0 <= low < high:
        raise ValueError(
            f"random_ids={random_ids} must be a range (low, high) with 0 <= low < high"
        )
    u = torch.rand(
        ids.shape, generator=generator, device=ids.device
    )  # which positions to predict
    r = torch.rand(
        ids.shape, generator=generator, device=ids.device
    )  # what to show there
    random_tokens = torch.randint(
        low, high, ids.shape, generator=generator, device=ids.device
    )
    chosen = maskable & (u < prob)
    labels = torch.where(chosen, ids, torch.full_like(ids, -100))
    inputs = torch.where(
        chosen & (r < 0.8), torch.full_like(ids, mask_id), ids
    )  # 80%: [MASK]
    inputs = torch.where(
        chosen & (r >= 0.8) & (r < 0.9), random_tokens, inputs
    )  # 10%: random
    return inputs, labels  # 10%: unchanged


class MaskedLM(nn.Module):
    """A BERT encoder with its masked-language-model head (Devlin et al., 2019).

    Token + learned position embeddings, LayerNorm, post-norm bidirectional blocks (as in BERT),
    and the MLM head: dense -> GELU -> LayerNorm -> output layer tied to the token embedding.
    Segment embeddings and next-sentence prediction are left out, as RoBERTa (Liu et al., 2019)
    showed they do not help. Sequences start with [CLS]; :meth:`cls_features` returns its final state.
    """

    def __init__(
        self,
        vocab_size: int,
        dim: int = 64,
        depth: int = 2,
        num_heads: int = 4,
        max_len: int = 32,
        mlp_ratio: float = 4.0,
        dropout: float = 0.1,
    ):
        super().__init__()
        if vocab_size < 2 or max_len < 1:
            raise ValueError(
                f"need vocab_size >= 2 and max_len >= 1; got {vocab_size}, {max_len}"
            )
        self.vocab_size, self.max_len = vocab_size, max_len
        self.token_embed = nn.Embedding(vocab_size, dim)
        self.pos_embed = nn.Embedding(max_len, dim)
        self.embed_norm = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            TransformerBlock(
                dim, num_heads, mlp_ratio, dropout, norm_first=False
            )
            for _ in range(depth)
        )
        self.mlm_transform = nn.Sequential(
            nn.Linear(dim, dim), nn.GELU(), nn.LayerNorm(dim)
        )
        self.mlm_bias = nn.Parameter(torch.zeros(vocab_size))
        self.apply(init_transformer_weights)
        nn.init.normal_(self.token_embed.weight, std=0.02)
        nn.init.normal_(self.pos_embed.weight, std=0.02)

    def encode(
        self,
        ids: Tensor,
        key_padding_mask: Tensor | None = None,
        need_weights: bool = False,
    ) -> Tensor:
        """Contextual states ``[B, L, dim]`` of ``ids`` ``[B, L]`` (``key_padding_mask`` True at [PAD])."""
        L = ids.shape[1]
        if L > self.max_len:
            raise ValueError(
                f"sequence length {L} exceeds max_len={self.max_len}"
            )
        pos = torch.arange(L, device=ids.device)
        x = self.drop(
            self.embed_norm(self.token_embed(ids) + self.pos_embed(pos))
        )
        for block in self.blocks:
            x = block(
                x, key_padding_mask=key_padding_mask, need_weights=need_weights
            )
        return x

    def forward(
        self, ids: Tensor, key_padding_mask: Tensor | None = None
    ) -> Tensor:
        """Logits over the vocabulary at every position, ``[B, L, vocab]``."""
        h = self.mlm_transform(self.encode(ids, key_padding_mask))
        return h @ self.token_embed.weight.t() + self.mlm_bias

    def cls_features(
        self, ids: Tensor, key_padding_mask: Tensor | None = None
    ) -> Tensor:
        """The final state of the [CLS] token (position 0), ``[B, dim]``: a summary of the sequence."""
        return self.encode(ids, key_padding_mask)[:, 0]


def mlm_step(
    mask_id: int,
    random_ids: tuple[int, int],
    pad_id: int,
    special_ids: tuple[int, ...] = (),
    prob: float = 0.15,
    dynamic: bool = True,
    seed: int = 0,
):
    """A :func:`vnotes.fit` step for masked-LM training.

    ``dynamic=True`` (RoBERTa) draws a fresh mask every time a sentence is seen; with
    ``dynamic=False`` the batch must already carry fixed ``(inputs, labels)`` drawn once (BERT's static masking).
    """
    generator = torch.Generator().manual_seed(seed)

    def step(
        model: nn.Module, batch: tuple[Tensor, ...]
    ) -> tuple[Tensor, dict[str, Tensor]]:
        if dynamic:
            ids = batch[0]
            maskable = ids != pad_id
            for s in special_ids:
                maskable &= ids != s
            inputs, labels = mask_tokens(
                ids.cpu(),
                maskable.cpu(),
                mask_id=mask_id,
                random_ids=random_ids,
                prob=prob,
                generator=generator,
            )
            inputs, labels = inputs.to(ids.device), labels.to(ids.device)
        else:
            inputs, labels = batch[0], batch[1]
        logits = model(inputs, key_padding_mask=inputs == pad_id)
        loss = F.cross_entropy(
            logits.flatten(0, 1), labels.flatten(), ignore_index=-100
        )
        chosen = labels != -100
        acc = (logits.argmax(-1)[chosen] == labels[chosen]).float().mean()
        return loss, {"masked_acc": acc.detach()}

    return step


@torch.no_grad()
def masked_token_accuracy(
    model: MaskedLM,
    inputs: Tensor,
    labels: Tensor,
    pad_id: int,
    batch_size: int = 512,
) -> float:
    """Share of the masked positions (``labels != -100``) where the model's top guess is the original token."""
    was_training = model.training
    model.eval()
    right = total = 0
    for i in range(0, inputs.shape[0], batch_size):
        x, y = inputs[i : i + batch_size], labels[i : i + batch_size]
        pred = model(x, key_padding_mask=x == pad_id).argmax(-1)
        chosen = y != -100
        right += (pred[chosen] == y[chosen]).sum().item()
        total += chosen.sum().item()
    model.train(was_training)
    if total == 0:
        raise ValueError("no position is masked (all labels are -100)")
    return right / total


# --------------------------------------------------------------------------- data and measurements
def caption_corpus(
    n: int,
    vocab,
    *,
    seed: int = 0,
    split: str = "train",
    length: int = 24,
    bos: bool = False,
    cls: bool = False,
    eos: bool = True,
    **world,
) -> tuple[Tensor, list[str]]:
    """The toy world's captions as ``[n, length]`` token ids (padded with [PAD]) and as text.

    ``world`` overrides :class:`vnotes.data.WorldConfig` fields (``max_objects``, ``only_combos`` ...).
    Scenes are drawn at 8 x 8 pixels: only their captions are used.
    """
    from vnotes.data import make_scenes

    scenes = make_scenes(n, seed=seed, split=split, image_size=8, **world)
    ids = vocab.encode_batch(
        scenes.captions, length, bos=bos, cls=cls, eos=eos
    )
    too_long = max(
        len(vocab.encode(c, bos=bos, cls=cls, eos=eos))
        for c in scenes.captions
    )
    if too_long > length:
        raise ValueError(
            f"length={length} truncates captions of {too_long} tokens; use length >= {too_long}"
        )
    return ids, scenes.captions


def next_token_step(pad_id: int):
    """A :func:`vnotes.fit` step: cross-entropy of predicting token t+1 from tokens <= t ([PAD] targets ignored)."""

    def step(
        model: nn.Module, batch: tuple[Tensor, ...]
    ) -> tuple[Tensor, dict[str, Tensor]]:
        ids = batch[0]
        inputs, targets = ids[:, :-1], ids[:, 1:]
        logits = model(inputs)
        loss = F.cross_entropy(
            logits.flatten(0, 1), targets.flatten(), ignore_index=pad_id
        )
        keep = targets != pad_id
        acc = (logits.argmax(-1)[keep] == targets[keep]).float().mean()
        return loss, {"token_acc": acc.detach()}

    return step


def sequence_labelling_step(
    model: nn.Module, batch: tuple[Tensor, Tensor]
) -> tuple[Tensor, dict[str, Tensor]]:
    """A :func:`vnotes.fit` step: per-position cross-entropy of ``model(x)`` [B, L, C] against ``y`` (-100: none)."""
    x, y = batch
    logits = model(x)
    loss = F.cross_entropy(
        logits.flatten(0, 1), y.flatten(), ignore_index=-100
    )
    keep = y != -100
    return loss, {
        "acc": (logits.argmax(-1)[keep] == y[keep]).float().mean().detach()
    }


@torch.no_grad()
def sequence_labelling_accuracy(model: nn.Module, loader) -> dict[str, float]:
    """Validation for :func:`sequence_labelling_step`: accuracy over the labelled positions."""
    was_training = model.training
    model.eval()
    right = total = 0
    for x, y in dry_iter(loader):
        keep = y != -100
        right += (model(x).argmax(-1)[keep] == y[keep]).sum().item()
        total += keep.sum().item()
    model.train(was_training)
    return {"acc": right / max(total, 1)}


def parse_caption(text: str) -> list[tuple[str, str, str]] | None:
    """The objects ``(size, colour, shape)`` of a toy-world caption, or None if the text breaks its grammar.

    The grammar: ``OBJ`` | ``OBJ REL OBJ`` | ``OBJ , OBJ , ... and OBJ``, with ``OBJ = a SIZE COLOUR SHAPE``.
    """
    from vnotes.data.toyworld import COLOURS, RELATIONS, SHAPES, SIZES

    obj = rf"a ({'|'.join(SIZES)}) ({'|'.join(COLOURS)}) ({'|'.join(SHAPES)})"
    words = " ".join(text.replace(",", " , ").split())
    patterns = [
        rf"^{obj}$",
        rf"^{obj} (?:{'|'.join(RELATIONS)}) {obj}$",
        rf"^{obj}(?: , {obj})* and {obj}$",
    ]
    for pattern in patterns:
        m = re.match(pattern, words)
        if m:
            found = re.findall(obj, words)
            return [tuple(f) for f in found]
    return None


def valid_caption_share(
    texts: list[str], allowed: set[tuple[str, str]] | None = None
) -> float:
    """Share of ``texts`` that follow the caption grammar and (if given) use only allowed (colour, shape) pairs."""
    if not texts:
        raise ValueError("valid_caption_share got no texts")
    good = 0
    for t in texts:
        objs = parse_caption(t)
        if objs is not None and (
            allowed is None or all((c, s) in allowed for _, c, s in objs)
        ):
            good += 1
    return good / len(texts)


def time_generation(
    model: CausalLM,
    prompt: Tensor,
    new_tokens: int,
    use_cache: bool,
    repeats: int = 3,
    clock: str = "wall",
) -> float:
    """Best-of-``repeats`` seconds for ``model.generate(prompt, new_tokens, use_cache)``.

    ``clock="wall"`` measures elapsed time; ``clock="cpu"`` the process's CPU time, which other
    programs on a shared machine do not inflate (equal to wall time for one busy thread). In a dry run
    (:func:`vnotes.scales.dry_run_steps`) at most that many tokens are generated: ``full``'s 2,040 tokens
    without the cache take many minutes on one CPU thread, and a dry run's times are never read.
    """
    if clock not in ("wall", "cpu"):
        raise ValueError(f"clock={clock!r} is unknown; allowed: 'wall', 'cpu'")
    new_tokens = dry_cap(new_tokens)
    now = time.perf_counter if clock == "wall" else time.process_time
    best = float("inf")
    for _ in range(repeats):
        start = now()
        model.generate(prompt, new_tokens, use_cache=use_cache)
        best = min(best, now() - start)
    return best
