"""Attention and the pre-norm Transformer block (chapter 4, ``chapters/04a_attention``).

* :func:`scaled_dot_product_attention` -- softmax(Q K^T / sqrt(d_k) + mask) V, from scratch,
  returning the weights as well (Vaswani et al., 2017)
* :class:`MultiHeadAttention` -- h heads in parallel, weights kept in ``.last_attention``,
  a fast path through ``F.scaled_dot_product_attention`` (:func:`fused_attention`) when nobody needs the weights,
  and a :class:`KVCache` for step-by-step decoding
* :class:`TransformerBlock` -- the pre-norm block (Xiong et al., 2020): x + MHA(LN(x)), x + MLP(LN(x))
* :func:`sinusoidal_position_encoding` -- the fixed positions of Vaswani et al. (2017)

Mask conventions (stated once, used everywhere in :mod:`vnotes.transformer`):

* ``attn_mask``: boolean ``True`` = *may attend* (as in ``F.scaled_dot_product_attention``),
  or a float tensor *added* to the scores (``-inf`` blocks).
* ``key_padding_mask`` / ``context_padding_mask``: ``[B, S]``, boolean ``True`` = *padding,
  ignore this key* (as in ``nn.MultiheadAttention``), or a float tensor added to the scores.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


# --------------------------------------------------------------------------- attention
def causal_mask(
    length: int,
    source_length: int | None = None,
    offset: int = 0,
    device: torch.device | str | None = None,
) -> Tensor:
    """Boolean ``[L, S]`` mask, True where query i may see key j, i.e. j <= i + offset (no peeking ahead)."""
    source_length = length if source_length is None else source_length
    i = torch.arange(length, device=device)[:, None]
    j = torch.arange(source_length, device=device)[None, :]
    return j <= i + offset


def _as_additive(mask: Tensor | None, dtype: torch.dtype) -> Tensor | None:
    """A mask in the additive form: bool True (attend) -> 0, False -> -inf; float masks pass through."""
    if mask is None:
        return None
    if mask.dtype == torch.bool:
        return torch.zeros(
            mask.shape, dtype=dtype, device=mask.device
        ).masked_fill(~mask, float("-inf"))
    if not mask.is_floating_point():
        raise TypeError(
            f"attention masks must be bool (True = attend) or float (added to scores); got {mask.dtype}"
        )
    return mask.to(dtype)


def scaled_dot_product_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    attn_mask: Tensor | None = None,
    is_causal: bool = False,
    dropout_p: float = 0.0,
    scale: float | None = None,
) -> tuple[Tensor, Tensor]:
    """Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k) + M) V, returning ``(out, weights)`` (Vaswani et al., 2017).

    ``q``: ``[..., L, d_k]``, ``k``: ``[..., S, d_k]``, ``v``: ``[..., S, d_v]``. ``attn_mask`` broadcasts
    to ``[..., L, S]`` (bool True = attend, or float added to the scores). ``is_causal`` lets query i
    see keys j <= i (aligned top-left when L != S, like ``F.scaled_dot_product_attention``).
    A query whose keys are all masked gets zero weights and a zero output (also like PyTorch).
    """
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(
            f"queries and keys need the same width d_k; got q {tuple(q.shape)} and k {tuple(k.shape)}"
        )
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(
            f"keys and values need the same length S; got k {tuple(k.shape)} and v {tuple(v.shape)}"
        )
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"dropout_p={dropout_p} must lie in [0, 1)")
    if is_causal and attn_mask is not None:
        raise ValueError(
            "give either is_causal=True or an explicit attn_mask, not both (as in PyTorch)"
        )
    L, S = q.shape[-2], k.shape[-2]
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    # scores_ij = q_i . k_j / sqrt(d_k)                                    [..., L, S]
    scores = (q @ k.transpose(-2, -1)) * scale
    if is_causal:
        attn_mask = causal_mask(L, S, device=q.device)
    additive = _as_additive(attn_mask, scores.dtype)
    if additive is not None:
        scores = scores + additive
    # a_ij = exp(s_ij) / sum_j' exp(s_ij'); rows with every key masked give NaN -> 0
    weights = torch.softmax(scores, dim=-1)
    if additive is not None:
        weights = weights.nan_to_num(0.0)
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p)
    # out_i = sum_j a_ij v_j                                               [..., L, d_v]
    return weights @ v, weights


def fused_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    attn_mask: Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
) -> Tensor:
    """PyTorch's fused ``F.scaled_dot_product_attention``, run in fp32 on a CPU when autocast hands it bf16/fp16.

    The result is the same softmax(Q K^T / sqrt(d_k) + M) V; only the speed differs. On a CPU the fused
    kernel's backward pass in bf16 is 3-8x slower than in fp32 at this book's sizes (measured with
    torch 2.14 on an AVX-512 EPYC, one thread: 16 ms against 2.7 ms for [64, 4, 17, 32], cast included),
    and it accumulates in fp32 anyway, so the inputs are widened (exactly) and the output rounded back.
    GPUs keep their native bf16/fp16 kernels.
    """
    if q.device.type == "cpu" and q.dtype in (torch.bfloat16, torch.float16):
        if attn_mask is not None and attn_mask.dtype != torch.bool:
            attn_mask = attn_mask.float()
        with torch.autocast(
            "cpu", enabled=False
        ):  # autocast would narrow them again
            out = F.scaled_dot_product_attention(
                q.float(),
                k.float(),
                v.float(),
                attn_mask=attn_mask,
                dropout_p=dropout_p,
                is_causal=is_causal,
            )
        return out.to(q.dtype)
    return F.scaled_dot_product_attention(
        q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal
    )


@dataclass
class KVCache:
    """The keys and values one attention layer has already computed, so decoding step t costs O(t), not O(t^2)."""

    k: Tensor | None = None  # [B, heads, S, d_k]
    v: Tensor | None = None  # [B, heads, S, d_k]

    @property
    def length(self) -> int:
        """How many positions are cached."""
        return 0 if self.k is None else self.k.shape[-2]

    def append(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Add the new positions' keys and values; return all of them."""
        self.k = k if self.k is None else torch.cat([self.k, k], dim=-2)
        self.v = v if self.v is None else torch.cat([self.v, v], dim=-2)
        return self.k, self.v


class MultiHeadAttention(nn.Module):
    """MultiHead(Q, K, V) = Concat(head_1..head_h) W^O with head_i = Attention(Q W_i^Q, K W_i^K, V W_i^V).

    Vaswani et al. (2017).

    Batch-first (``[B, L, dim]``). With ``need_weights=True`` the attention weights
    ``[B, heads, L, S]`` are computed by :func:`scaled_dot_product_attention` and kept in
    ``.last_attention`` for plotting; otherwise the fused ``F.scaled_dot_product_attention`` runs.
    """

    def __init__(
        self, dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True
    ):
        super().__init__()
        if dim <= 0 or num_heads <= 0 or dim % num_heads:
            raise ValueError(
                f"dim={dim} must be a positive multiple of num_heads={num_heads}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout={dropout} must lie in [0, 1)")
        self.dim, self.num_heads, self.head_dim, self.dropout = (
            dim,
            num_heads,
            dim // num_heads,
            dropout,
        )
        self.q_proj = nn.Linear(
            dim, dim, bias=bias
        )  # W^Q for all heads at once
        self.k_proj = nn.Linear(dim, dim, bias=bias)  # W^K
        self.v_proj = nn.Linear(dim, dim, bias=bias)  # W^V
        self.out_proj = nn.Linear(dim, dim, bias=bias)  # W^O
        self.last_attention: Tensor | None = (
            None  # [B, heads, L, S] after a need_weights=True call
        )

    def _split_heads(self, x: Tensor) -> Tensor:
        B, L, _ = x.shape
        # [B, L, dim] -> [B, heads, L, head_dim]
        return x.view(B, L, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(
        self,
        query: Tensor,
        key: Tensor | None = None,
        value: Tensor | None = None,
        key_padding_mask: Tensor | None = None,
        attn_mask: Tensor | None = None,
        is_causal: bool = False,
        need_weights: bool = False,
        kv_cache: KVCache | None = None,
    ) -> Tensor:
        """Attend from ``query`` ``[B, L, dim]`` to ``key``/``value`` ``[B, S, dim]`` (self-attention when omitted).

        ``kv_cache``: keys and values of earlier positions, extended in place by this call's. With
        ``is_causal`` and L < S (decoding with a cache), the L queries are the *last* L positions:
        query i sees keys j <= i + S - L (the mask is aligned bottom-right).
        """
        key = query if key is None else key
        value = key if value is None else value
        if (
            query.shape[-1] != self.dim
            or key.shape[-1] != self.dim
            or value.shape[-1] != self.dim
        ):
            raise ValueError(
                f"inputs must have last dimension dim={self.dim}; got query {tuple(query.shape)}, "
                f"key {tuple(key.shape)}, value {tuple(value.shape)}"
            )
        B, L, _ = query.shape
        q = self._split_heads(self.q_proj(query))  # [B, heads, L, d_k]
        k = self._split_heads(self.k_proj(key))  # [B, heads, S_new, d_k]
        v = self._split_heads(self.v_proj(value))  # [B, heads, S_new, d_k]
        if kv_cache is not None:
            k, v = kv_cache.append(k, v)  # [B, heads, S_past + S_new, d_k]
        S = k.shape[-2]

        mask = self._combine_masks(
            B, L, S, key_padding_mask, attn_mask, is_causal, q
        )
        # a plain square causal pattern needs no mask tensor: the kernels build it themselves
        plain_causal = is_causal and mask is None
        p = self.dropout if self.training else 0.0
        if need_weights:
            out, weights = scaled_dot_product_attention(
                q, k, v, attn_mask=mask, is_causal=plain_causal, dropout_p=p
            )
            self.last_attention = weights.detach()
        else:
            # fast path: PyTorch's fused kernel, which never materialises the [L, S] weights
            out = fused_attention(
                q, k, v, attn_mask=mask, dropout_p=p, is_causal=plain_causal
            )
        # Concat(head_1..head_h): [B, heads, L, d_k] -> [B, L, dim], then W^O
        out = out.transpose(1, 2).reshape(B, L, self.dim)
        return self.out_proj(out)

    @staticmethod
    def _combine_masks(
        B: int,
        L: int,
        S: int,
        key_padding_mask: Tensor | None,
        attn_mask: Tensor | None,
        is_causal: bool,
        q: Tensor,
    ) -> Tensor | None:
        """One mask ``[B or 1, heads or 1, L, S]`` from padding, explicit and causal masks (None: none or plain causal)."""
        if is_causal and attn_mask is not None:
            raise ValueError(
                "give either is_causal=True or an explicit attn_mask, not both"
            )
        parts: list[Tensor] = []
        if attn_mask is not None:
            if attn_mask.dim() == 2:  # [L, S] -> [1, 1, L, S]
                attn_mask = attn_mask[None, None]
            elif (
                attn_mask.dim() == 3
            ):  # [B * heads, L, S] as in nn.MultiheadAttention
                attn_mask = attn_mask.reshape(B, -1, L, S)
            elif attn_mask.dim() != 4:
                raise ValueError(
                    "attn_mask must be [L, S], [B*heads, L, S] or [B, heads, L, S]; "
                    f"got {tuple(attn_mask.shape)}"
                )
            parts.append(attn_mask)
        if is_causal and (L != S or key_padding_mask is not None):
            # with a cache the L new queries are the last L positions: query i sees keys j <= i + S - L
            parts.append(
                causal_mask(L, S, offset=S - L, device=q.device)[None, None]
            )
        if key_padding_mask is not None:
            if key_padding_mask.shape != (B, S):
                raise ValueError(
                    f"key_padding_mask must have shape (B, S) = {(B, S)}; "
                    f"got {tuple(key_padding_mask.shape)}"
                )
            if key_padding_mask.dtype == torch.bool:
                parts.append(
                    ~key_padding_mask[:, None, None, :]
                )  # True = padding -> False = do not attend
            else:
                parts.append(key_padding_mask[:, None, None, :])
        if not parts:
            return None
        if len(parts) == 1:
            return parts[0]
        if all(p.dtype == torch.bool for p in parts):
            mask = parts[0]
            for p in parts[1:]:
                mask = mask & p
            return mask
        mask = _as_additive(parts[0], q.dtype)
        for p in parts[1:]:
            mask = mask + _as_additive(p, q.dtype)
        return mask


class MLP(nn.Module):
    """The position-wise feed-forward network FFN(x) = W_2 GELU(W_1 x + b_1) + b_2 (Vaswani et al., 2017)."""

    def __init__(self, dim: int, hidden_dim: int, dropout: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class TransformerBlock(nn.Module):
    """Pre-norm Transformer block (Xiong et al., 2020): x + MHA(LN(x)), [x + CrossMHA(LN(x), context)], x + MLP(LN(x)).

    ``norm_first=False`` gives the original post-norm block of Vaswani et al. (2017) and BERT:
    x = LN(x + MHA(x)), then x = LN(x + MLP(x)).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        cross_attention: bool = False,
        norm_first: bool = True,
        layer_norm_eps: float = 1e-5,
    ):
        super().__init__()
        if mlp_ratio <= 0:
            raise ValueError(f"mlp_ratio={mlp_ratio} must be positive")
        self.norm_first = norm_first
        self.norm1 = nn.LayerNorm(dim, eps=layer_norm_eps)
        self.attn = MultiHeadAttention(dim, num_heads, dropout=dropout)
        self.cross_attention = cross_attention
        if cross_attention:
            self.norm_cross = nn.LayerNorm(dim, eps=layer_norm_eps)
            self.cross_attn = MultiHeadAttention(
                dim, num_heads, dropout=dropout
            )
        self.norm2 = nn.LayerNorm(dim, eps=layer_norm_eps)
        self.mlp = MLP(dim, int(dim * mlp_ratio), dropout)
        self.drop = nn.Dropout(dropout)

    @property
    def last_attention(self) -> Tensor | None:
        """The self-attention weights ``[B, heads, L, L]`` of the last ``need_weights=True`` call."""
        return self.attn.last_attention

    def forward(
        self,
        x: Tensor,
        context: Tensor | None = None,
        key_padding_mask: Tensor | None = None,
        context_padding_mask: Tensor | None = None,
        attn_mask: Tensor | None = None,
        is_causal: bool = False,
        need_weights: bool = False,
        kv_cache: KVCache | None = None,
    ) -> Tensor:
        """``x``: ``[B, L, dim]``; ``context``: ``[B, S, dim]`` for cross-attention."""
        if self.cross_attention and context is None:
            raise ValueError(
                "this block has cross_attention=True and needs a context tensor [B, S, dim]"
            )
        if not self.cross_attention and context is not None:
            raise ValueError(
                "context was given but this block was built with cross_attention=False"
            )

        def self_attention(h: Tensor) -> Tensor:
            return self.drop(
                self.attn(
                    h,
                    key_padding_mask=key_padding_mask,
                    attn_mask=attn_mask,
                    is_causal=is_causal,
                    need_weights=need_weights,
                    kv_cache=kv_cache,
                )
            )

        def cross_attention(h: Tensor) -> Tensor:
            return self.drop(
                self.cross_attn(
                    h,
                    context,
                    context,
                    key_padding_mask=context_padding_mask,
                    need_weights=need_weights,
                )
            )

        if self.norm_first:
            # pre-norm: the residual stream is never normalised, only each branch's input
            x = x + self_attention(self.norm1(x))
            if self.cross_attention:
                x = x + cross_attention(self.norm_cross(x))
            return x + self.mlp(self.norm2(x))
        # post-norm: normalise after each residual sum
        x = self.norm1(x + self_attention(x))
        if self.cross_attention:
            x = self.norm_cross(x + cross_attention(x))
        return self.norm2(x + self.mlp(x))


# --------------------------------------------------------------------------- positions and initialisation
def sinusoidal_position_encoding(
    length: int, dim: int, base: float = 10000.0
) -> Tensor:
    """Fixed positions ``[length, dim]`` (Vaswani et al., 2017): PE(p, 2i) = sin(p / base^(2i/d)), PE(p, 2i+1) = cos(.)."""
    if length < 1 or dim < 2 or dim % 2:
        raise ValueError(
            f"need length >= 1 and an even dim >= 2; got length={length}, dim={dim}"
        )
    position = torch.arange(length, dtype=torch.float32)[:, None]  # [L, 1]
    # omega_i = base^(-2i/d), i = 0..d/2-1: wavelengths from 2 pi up to 2 pi * base
    omega = torch.exp(
        -math.log(base) * torch.arange(0, dim, 2, dtype=torch.float32) / dim
    )  # [d/2]
    pe = torch.empty(length, dim)
    pe[:, 0::2] = torch.sin(position * omega)
    pe[:, 1::2] = torch.cos(position * omega)
    return pe


def init_transformer_weights(m: nn.Module) -> None:
    """Truncated-normal (std 0.02) linear weights, zero biases, unit LayerNorms: the BERT/ViT initialisation."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


@contextlib.contextmanager
def ablate_heads(
    attention: MultiHeadAttention, heads: Sequence[int]
) -> Iterator[None]:
    """Inside the ``with`` block, the given heads of ``attention`` output zero (Michel et al., 2019's head masking)."""
    heads = list(heads)
    for h in heads:
        if not 0 <= h < attention.num_heads:
            raise ValueError(
                f"head {h} does not exist; this layer has heads 0..{attention.num_heads - 1}"
            )
    d = attention.head_dim

    def zero_heads(
        module: nn.Module, inputs: tuple[Tensor, ...]
    ) -> tuple[Tensor, ...]:
        # the input of W^O is Concat(head_1..head_h) [B, L, heads * d_k]: zero the ablated heads' slices
        x = inputs[0].clone()
        for h in heads:
            x[..., h * d : (h + 1) * d] = 0.0
        return (x,)

    handle = attention.out_proj.register_forward_pre_hook(zero_heads)
    try:
        yield
    finally:
        handle.remove()
