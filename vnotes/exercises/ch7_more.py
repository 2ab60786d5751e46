"""Chapter 7 (vision--language models), pages 7c, 7d, 7e, 7f, 7h and 7j: ALBEF's hard-negative draw and its
momentum-distillation targets, BLIP's captioning loss, CapFilt's filter, the Multiway Transformer's routing,
ViLBERT's co-attention, and the quizzes of these pages."""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

import torch
import torch.nn.functional as F

from .core import CheckResult, _check, _choice, _compare, _number, _run, _Stop

__all__ = [
    "check_albef_hard_negatives",
    "check_albef_distill_targets",
    "check_blip_lm_loss",
    "check_capfilt_filter",
    "check_multiway_forward",
    "check_co_attention",
    "albef_quiz",
    "albef_noise_quiz",
    "blip_coca_quiz",
    "capfilt_quiz",
    "multiway_quiz",
    "region_models_quiz",
]


def _run_case(fn: Callable, label: str, *args, **kwargs):
    """:func:`_run`, with the case named when the reader's function raises (a "not yet" stays as it is)."""
    try:
        return _run(fn, *args, **kwargs)
    except _Stop as stop:
        if str(stop).startswith("not yet"):
            raise
        raise _Stop(f"{stop} ({label})") from None


def _long(got: Any, what: str, n: int) -> torch.Tensor:
    """The reader's answer as ``n`` integers."""
    try:
        t = torch.as_tensor(got)
    except (TypeError, ValueError, RuntimeError):
        raise _Stop(
            f"{what} is a {type(got).__name__}, not a tensor"
        ) from None
    if t.dtype.is_floating_point or t.dtype == torch.bool or t.is_complex():
        raise _Stop(f"{what} has dtype {t.dtype}; expected integer indices")
    if tuple(t.shape) != (n,):
        raise _Stop(
            f"{what} has shape {tuple(t.shape)}, expected ({n},): one column per row"
        )
    return t.long()


def _mask(got: Any, what: str, n: int) -> torch.Tensor:
    """The reader's answer as ``n`` booleans."""
    try:
        t = torch.as_tensor(got)
    except (TypeError, ValueError, RuntimeError):
        raise _Stop(
            f"{what} is a {type(got).__name__}, not a tensor"
        ) from None
    if t.dtype != torch.bool:
        raise _Stop(
            f"{what} has dtype {t.dtype}; expected a boolean mask (True = keep)"
        )
    if tuple(t.shape) != (n,):
        raise _Stop(f"{what} has shape {tuple(t.shape)}, expected ({n},)")
    return t


def _pair(got: Any, what: str) -> tuple:
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        raise _Stop(
            f"{what} should return two tensors, got {type(got).__name__}"
        )
    return tuple(got)


# ============================================================================ page 7c
def check_albef_hard_negatives(albef_hard_negatives: Callable) -> CheckResult:
    """Check ``albef_hard_negatives(similarity, positive) -> index``: for each row ``i`` of ``similarity``
    ``[B, M]`` (image ``i`` against ``M`` captions, already divided by the temperature) one column drawn
    with probability proportional to ``exp(similarity[i, j])`` among the columns ``j`` that are not
    ``positive[i, j]`` (its own caption and any caption that says the same thing); ``index`` is ``[B]``.

    Each case is repeated 2000 times in one batch, and the share of draws of each column is compared with
    the closed-form probabilities (within five standard errors). Cases: the diagonal as the only
    positives, identical captions, more columns than rows (a queue), large similarities (a small
    temperature), a row with a single negative. The reader's global random state is left as it was.
    """

    def body() -> str:
        g = torch.Generator().manual_seed(70)
        n_rep = 2000

        def rand(*shape, scale=1.5):
            return scale * torch.randn(
                *shape, generator=g, dtype=torch.float64
            )

        ids = torch.tensor([0, 1, 0, 2, 1, 3])
        queue_pos = torch.zeros(4, 7, dtype=torch.bool)
        queue_pos[range(4), range(4)] = True
        queue_pos[1, 5] = True
        one_left = torch.ones(3, 5, dtype=torch.bool)
        one_left[0, 2] = one_left[1, 0] = one_left[2, 4] = False
        one_left[2, 1] = False
        cases = [
            (
                "the diagonal as the positives",
                rand(5, 5),
                torch.eye(5, dtype=torch.bool),
            ),
            (
                "identical captions in the batch",
                rand(6, 6),
                ids[:, None] == ids[None, :],
            ),
            ("a queue: 7 columns for 4 rows", rand(4, 7), queue_pos),
            (
                "large similarities, as after dividing by a small temperature",
                rand(4, 4, scale=40.0) + 80.0,
                torch.eye(4, dtype=torch.bool),
            ),
            ("rows with one or two negatives", rand(3, 5), one_left),
        ]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(71)
            for label, sim, pos in cases:
                B, M = sim.shape
                want = torch.softmax(sim.masked_fill(pos, float("-inf")), 1)
                before = sim.clone()
                got = _run_case(
                    albef_hard_negatives,
                    label,
                    sim.repeat(n_rep, 1).float(),
                    pos.repeat(n_rep, 1),
                )
                got = _long(got, f"the drawn columns ({label})", B * n_rep)
                if not torch.equal(sim, before):
                    raise _Stop(
                        f"albef_hard_negatives changed its input ({label})"
                    )
                if ((got < 0) | (got >= M)).any():
                    bad = int(got[(got < 0) | (got >= M)][0])
                    raise _Stop(
                        f"column {bad} does not exist: there are {M} columns ({label})"
                    )
                got = got.view(n_rep, B)
                drew_pos = pos[torch.arange(B)[None, :].expand(n_rep, B), got]
                if drew_pos.any():
                    row = int(drew_pos.nonzero()[0, 1])
                    col = int(got[drew_pos.nonzero()[0, 0], row])
                    kind = (
                        "its own caption"
                        if col == row
                        else "a caption identical to its own"
                    )
                    raise _Stop(
                        f"row {row} drew column {col}, {kind}: a positive can never be the "
                        f"negative ({label})"
                    )
                share = (
                    torch.stack(
                        [
                            torch.bincount(got[:, b], minlength=M)
                            for b in range(B)
                        ]
                    ).double()
                    / n_rep
                )
                tol = 5 * (want * (1 - want) / n_rep).sqrt() + 0.01
                if ((share - want).abs() > tol).any():
                    flat = int(((share - want).abs() - tol).argmax())
                    b, j = divmod(flat, M)
                    raise _Stop(
                        f"row {b}, column {j} was drawn in {share[b, j]:.1%} of {n_rep} draws; its "
                        f"probability is {want[b, j]:.1%} ({label})"
                    )
        return (
            "draws each wrong caption as often as its probability says, never a positive, over five "
            "batches with identical captions, a queue and large similarities"
        )

    return _check("albef_hard_negatives", albef_hard_negatives, body)


def albef_quiz(
    *,
    itm: Mapping[str, float],
    rerank: Mapping[str, float],
    batch_size: int,
) -> list[dict]:
    """The quiz of chapter 7c (``07c_albef``): ``itm`` maps "random" and "hard" to the ITM accuracies,
    ``rerank`` is :func:`vnotes.multimodal.albef.rerank_retrieval`'s result, ``batch_size`` the training
    batch."""
    harder = (
        "the caption with one word changed"
        if itm["hard"] < itm["random"]
        else "a random wrong caption"
    )
    gain = rerank["itm_rerank_r1"] - rerank["itc_r1"]
    helped = "yes: R@1 went up" if gain > 0 else "no: R@1 did not go up"
    return [
        _choice(
            "Why are captions that say exactly what the image's own caption says left out of the "
            "hard-negative draw?",
            [
                "they are right captions: as negatives they would teach ITM that a true caption does not match",
                "they are too easy: ITM would learn nothing from them",
                "their similarities are not defined",
            ],
            "they are right captions: as negatives they would teach ITM that a true caption does not match",
            "Right: a hard negative must be wrong. In this small world many pairs share a caption, so "
            "the draw excludes every caption equal to the positive, not just the diagonal.",
        ),
        _number(
            f"With a training batch of {batch_size} pairs, how many (image, caption) pairs does one ITM "
            "step classify (every row having a negative to draw)?",
            3 * batch_size,
            f"Right: {batch_size} positives, one hard negative caption per image and one hard negative "
            f"image per caption: $3 \\cdot {batch_size} = {3 * batch_size}$.",
        ),
        _choice(
            "Which wrong caption was harder for this page's ITM head?",
            ["a random wrong caption", "the caption with one word changed"],
            harder,
            f"Right: {itm['random']:.1%} right against random wrong captions, {itm['hard']:.1%} "
            "against one word changed.",
        ),
        _choice(
            "Did re-ranking ITC's top 8 captions with ITM improve image-to-text R@1 in this run?",
            ["yes: R@1 went up", "no: R@1 did not go up"],
            helped,
            f"Right: {rerank['itc_r1']:.1%} with ITC alone, {rerank['itm_rerank_r1']:.1%} after "
            "re-ranking.",
        ),
    ]


# ============================================================================ page 7d
def check_albef_distill_targets(
    albef_distill_targets: Callable,
) -> CheckResult:
    """Check ``albef_distill_targets(momentum_logits, positive, alpha) -> targets``: ALBEF's soft ITC
    targets ``alpha * softmax(momentum_logits) + (1 - alpha) * y_true`` (rows), where ``y_true`` spreads
    each row's mass evenly over its ``positive`` columns; against
    :func:`vnotes.multimodal.objectives.distill_targets`. The momentum logits are already divided by the
    temperature. Cases: the diagonal as the positives, identical captions, a queue (more columns than
    rows), alpha = 0, alpha = 1, large logits.
    """

    def body() -> str:
        from vnotes.multimodal.objectives import distill_targets

        g = torch.Generator().manual_seed(72)

        def rand(*shape, scale=2.0):
            return scale * torch.randn(
                *shape, generator=g, dtype=torch.float64
            )

        ids = torch.tensor([0, 1, 0, 2, 1])
        queue_pos = torch.zeros(3, 6, dtype=torch.bool)
        queue_pos[range(3), range(3)] = True
        queue_pos[0, 4] = queue_pos[2, 5] = True
        cases = [
            (
                "the diagonal as the positives, alpha 0.4",
                rand(4, 4),
                torch.eye(4, dtype=torch.bool),
                0.4,
            ),
            (
                "identical captions, alpha 0.4",
                rand(5, 5),
                ids[:, None] == ids[None, :],
                0.4,
            ),
            (
                "a queue: 6 columns for 3 rows, alpha 0.3",
                rand(3, 6),
                queue_pos,
                0.3,
            ),
            (
                "alpha 0: the ground truth only",
                rand(5, 5),
                ids[:, None] == ids[None, :],
                0.0,
            ),
            (
                "alpha 1: the momentum model only",
                rand(4, 4),
                torch.eye(4, dtype=torch.bool),
                1.0,
            ),
            (
                "large logits, alpha 0.4",
                rand(4, 6, scale=300.0) + 800.0,
                queue_pos[[0, 1, 2, 0]],
                0.4,
            ),
        ]
        for label, logits, pos, alpha in cases:
            p = pos.double()
            want = distill_targets(logits, alpha, p / p.sum(1, keepdim=True))
            before = logits.clone()
            got = _run_case(
                albef_distill_targets, label, logits, pos.clone(), alpha
            )
            if not torch.equal(logits, before):
                raise _Stop(
                    f"albef_distill_targets changed momentum_logits in place ({label})"
                )
            _compare(got, want, f"the targets ({label})", rtol=1e-6, atol=1e-9)
        return "matches distill_targets with identical captions, a queue, alpha 0 and 1 and large logits"

    return _check("albef_distill_targets", albef_distill_targets, body)


def albef_noise_quiz(
    *,
    alpha: float,
    results: Mapping[str, Mapping[str, float]],
    own_true: float,
    own_wrong: float,
) -> list[dict]:
    """The quiz of chapter 7d (``07d_albef_noise``): ``alpha`` the distillation weight of the MoD run,
    ``results`` the page's table (run name -> metric -> value, the key "ITC image-to-text R@1" in each),
    ``own_true`` and ``own_wrong`` the momentum model's mean probability for true and for wrong captions."""
    names = list(results)
    metric = "ITC image-to-text R@1"
    best = max(names, key=lambda n: results[n][metric])
    believes = (
        "the true captions" if own_true > own_wrong else "the wrong captions"
    )
    return [
        _number(
            f"With $\\alpha = {alpha:g}$, how much weight does a pair's own caption get in its ITC "
            "target from the ground-truth term alone (one positive per row)? Give two decimals.",
            round(1 - alpha, 2),
            f"Right: $(1 - \\alpha) = {1 - alpha:.2f}$; the momentum model's probability for it, "
            f"times {alpha:g}, comes on top.",
            precision=2,
        ),
        _choice(
            "What does the run with $\\alpha = 0$ lose?",
            [
                "the momentum model's predictions in the targets (the queue is still filled)",
                "the queue of earlier embeddings",
                "the hard negatives of ITM",
            ],
            "the momentum model's predictions in the targets (the queue is still filled)",
            "Right: only the targets change; both runs keep the queue, ITM and MLM.",
        ),
        _choice(
            "In the seed-0 runs, which had the higher ITC image-to-text R@1 on clean test captions?",
            names,
            best,
            f"Right: {', '.join(f'{n}: {results[n][metric]:.1%}' for n in names)} (seed 0; whether the "
            "difference is beyond noise is judged over all three seeds above).",
        ),
        _choice(
            "To which captions does the momentum model give more probability, on average?",
            ["the true captions", "the wrong captions"],
            believes,
            f"Right: {own_true:.2f} for true captions, {own_wrong:.2f} for wrong ones.",
        ),
    ]


# ============================================================================ page 7e
def check_blip_lm_loss(blip_lm_loss: Callable) -> CheckResult:
    """Check ``blip_lm_loss(logits, ids, pad_id, label_smoothing=0.0) -> loss``: the decoder read the
    captions ``ids`` ``[B, L]`` and returned ``logits`` ``[B, L, V]``, position ``t`` predicting token
    ``t + 1``; the loss is the mean next-token cross-entropy over the targets that are not ``pad_id``,
    with label smoothing as ``F.cross_entropy`` defines it. Compared with ``F.cross_entropy(...,
    ignore_index=pad_id, label_smoothing=...)`` on the shifted tensors. Cases: no padding, captions of
    different lengths, label smoothing 0.1, a [PAD] id other than 0, two tokens per caption.
    """

    def body() -> str:
        g = torch.Generator().manual_seed(73)

        def captions(B, L, V, pad, lengths):
            ids = torch.randint(4, V, (B, L), generator=g)
            ids[:, 0] = 1  # [DEC]
            for b, n in enumerate(lengths):
                ids[b, n:] = pad
            return ids

        cases = [
            ("no padding", 3, 6, 11, 0, [6, 6, 6], 0.0),
            ("captions of different lengths", 4, 7, 13, 0, [7, 3, 5, 2], 0.0),
            (
                "label smoothing 0.1, different lengths",
                4,
                6,
                12,
                0,
                [6, 2, 4, 5],
                0.1,
            ),
            ("[PAD] has id 3", 3, 5, 10, 3, [5, 3, 2], 0.1),
            ("two tokens per caption", 5, 2, 9, 0, [2] * 5, 0.0),
        ]
        for label, B, L, V, pad, lengths, eps in cases:
            ids = captions(B, L, V, pad, lengths)
            logits = 2 * torch.randn(B, L, V, generator=g, dtype=torch.float64)
            want = F.cross_entropy(
                logits[:, :-1].flatten(0, 1),
                ids[:, 1:].flatten(),
                ignore_index=pad,
                label_smoothing=eps,
            )
            got = _run_case(
                blip_lm_loss,
                label,
                logits.clone(),
                ids.clone(),
                pad,
                label_smoothing=eps,
            )
            if isinstance(got, torch.Tensor) and got.numel() == 1:
                got = got.reshape(())
            _compare(got, want, f"the loss ({label})", rtol=1e-6, atol=1e-9)
        return (
            "matches the shifted cross-entropy without [PAD], with different lengths, label smoothing "
            "and another [PAD] id"
        )

    return _check("blip_lm_loss", blip_lm_loss, body)


def blip_coca_quiz(
    *,
    ms_blip: float,
    ms_coca: float,
    accuracy: Mapping[str, Mapping[str, float]],
) -> list[dict]:
    """The quiz of chapter 7e (``07e_blip_coca``): the milliseconds per training step of each model and
    ``accuracy`` (model -> "seen pairs" / "held-out pairs" -> caption accuracy)."""
    cheaper = "CoCa" if ms_coca < ms_blip else "BLIP"
    coca = accuracy["CoCa"]
    coca_heldout = (
        "lower on held-out pairs"
        if coca["held-out pairs"] < coca["seen pairs"]
        else "not lower on held-out pairs"
    )
    return [
        _choice(
            "In BLIP's captioning loss, the logits the decoder computes at a position are scored against …",
            [
                "the next token of the caption",
                "the token at the same position",
                "every token of the caption",
            ],
            "the next token of the caption",
            "Right: the decoder reads tokens up to $t$ (causal mask) and predicts the next one; the "
            "last position has no target and [PAD] targets are ignored.",
        ),
        _number(
            "How many times does one BLIP training step run its text transformer on the batch's "
            "captions (the momentum model and the ITM negatives not counted)?",
            3,
            "Right: as unimodal encoder ([CLS], ITC), image-grounded encoder ([ENC], ITM) and decoder "
            "([DEC], LM); CoCa's one decoder pass serves both of its losses.",
        ),
        _choice(
            "Which model's training step was cheaper in this run?",
            ["BLIP", "CoCa"],
            cheaper,
            f"Right: {ms_blip:.0f} ms per BLIP step, {ms_coca:.0f} ms per CoCa step.",
        ),
        _choice(
            "Was CoCa's caption accuracy lower on held-out colour–shape pairs than on seen ones?",
            ["lower on held-out pairs", "not lower on held-out pairs"],
            coca_heldout,
            f"Right: {coca['seen pairs']:.1%} on seen pairs, {coca['held-out pairs']:.1%} on held-out "
            "pairs.",
        ),
    ]


# ============================================================================ page 7f
def check_capfilt_filter(capfilt_filter: Callable) -> CheckResult:
    """Check ``capfilt_filter(itm_web, itm_synthetic, threshold=0.5) -> (keep_web, keep_synthetic)``:
    ``itm_*`` are the filter's ITM logits ``[N, 2]`` (column 1 = "match") for the web captions and for
    the captioner's synthetic ones; a caption is kept when its match probability exceeds ``threshold``,
    the two judged independently. Against the rule of :func:`vnotes.multimodal.blip.capfilt`. Cases:
    random logits at thresholds 0.5, 0.8 and 0.2, a probability of exactly 0.5, large logits.
    """

    def body() -> str:
        g = torch.Generator().manual_seed(74)

        def rand(n, scale=2.0):
            return scale * torch.randn(n, 2, generator=g, dtype=torch.float64)

        tie = rand(6)
        tie[:3, 1] = tie[:3, 0]  # P(match) = 0.5 exactly: not above 0.5
        shifted = rand(8) + torch.tensor([0.0, 2.5], dtype=torch.float64)
        cases = [
            ("threshold 0.5", rand(12), rand(12), 0.5),
            ("threshold 0.8", rand(12), shifted, 0.8),
            ("threshold 0.2", rand(10), rand(10), 0.2),
            ("match probabilities of exactly 0.5", tie, rand(6), 0.5),
            ("large logits", rand(8, 60.0), rand(8, 60.0), 0.5),
            (
                "positive logits for both answers",
                rand(9).abs() + 1.0,
                rand(9).abs() + 0.5,
                0.5,
            ),
        ]
        for label, web, syn, threshold in cases:
            want = [
                (torch.softmax(x, 1)[:, 1] > threshold) for x in (web, syn)
            ]
            got = _pair(
                _run_case(
                    capfilt_filter,
                    label,
                    web.clone(),
                    syn.clone(),
                    threshold=threshold,
                ),
                "capfilt_filter",
            )
            for what, mask, ref, x in zip(
                ("keep_web", "keep_synthetic"), got, want, (web, syn)
            ):
                mask = _mask(mask, f"{what} ({label})", len(ref))
                if not torch.equal(mask, ref):
                    i = int((mask != ref).nonzero()[0])
                    p = torch.softmax(x, 1)[i, 1].item()
                    raise _Stop(
                        f"{what}[{i}] is {bool(mask[i])} for logits ({x[i, 0]:.3g}, {x[i, 1]:.3g}), a "
                        f"match probability of {p:.3g}, at threshold {threshold:g} ({label})"
                    )
        return "keeps exactly the captions above the threshold, web and synthetic, at three thresholds"

    return _check("capfilt_filter", capfilt_filter, body)


def capfilt_quiz(
    *,
    kept_right: float,
    kept_wrong: float,
    decoding: Mapping[str, Sequence],
    chosen: str,
    itm_before: float,
    itm_after: float,
) -> list[dict]:
    """The quiz of chapter 7f (``07f_capfilt``): the shares of right and wrong web captions the filter kept,
    ``decoding`` (name -> (top_p, validation share)) and the one ``chosen``, and the hard-ITM accuracy
    before and after CapFilt."""
    best = max(decoding, key=lambda n: decoding[n][1])
    if best != chosen:
        raise ValueError(
            f"chosen={chosen!r} is not the best decoding on validation ({best!r})"
        )
    kept_more = (
        "right web captions"
        if kept_right > kept_wrong
        else "wrong web captions"
    )
    after = (
        "the model pre-trained on CapFilt data"
        if itm_after > itm_before
        else "the model pre-trained on web + human pairs"
    )
    return [
        _choice(
            "The filter keeps a web caption when …",
            [
                "its ITM match probability is above 0.5",
                "its ITC similarity is among the top 8",
                "the captioner would have written the same caption",
            ],
            "its ITM match probability is above 0.5",
            "Right: the ITM head of the fine-tuned model judges each (image, caption) pair; web and "
            "synthetic captions are judged the same way, independently.",
        ),
        _choice(
            "Which decoding wrote the synthetic captions of the web images in this run?",
            list(decoding),
            chosen,
            "Right: "
            + ", ".join(
                f"{n}: {decoding[n][1]:.0%} right on validation"
                for n in decoding
            )
            + "; the better one was chosen.",
        ),
        _choice(
            "Which web captions did the filter keep a larger share of?",
            ["right web captions", "wrong web captions"],
            kept_more,
            f"Right: it kept {kept_right:.0%} of the right ones and {kept_wrong:.0%} of the wrong ones.",
        ),
        _choice(
            "Which model matched better when one word of the caption was changed (hard ITM)?",
            [
                "the model pre-trained on web + human pairs",
                "the model pre-trained on CapFilt data",
            ],
            after,
            f"Right: {itm_before:.1%} before, {itm_after:.1%} after CapFilt (one seed).",
        ),
    ]


# ============================================================================ page 7h
def check_multiway_forward(multiway_forward: Callable) -> CheckResult:
    """Check ``multiway_forward(block, x, num_image_tokens, mode, padding=None) -> y``: one block of the
    Multiway Transformer, ``x + attn(norm1(x))`` with the shared attention, then for each token
    ``x + experts[e](norm2[e](x))`` with the expert ``e`` of its modality; against
    :class:`vnotes.multimodal.multiway.MultiwayBlock` itself. Cases: vision and language modes, fusion in a
    bottom block (image tokens to V-FFN, text tokens to L-FFN) and in a top block (all to VL-FFN), with text
    padding and with a single image token. Every parameter is random, layer norms included.
    """

    def body() -> str:
        from vnotes.multimodal.multiway import MultiwayBlock

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(75)
            bottom = MultiwayBlock(16, 2, with_vl_expert=False).double().eval()
            top = MultiwayBlock(16, 2, with_vl_expert=True).double().eval()
            for block in (bottom, top):
                for p in block.parameters():
                    torch.nn.init.normal_(p, 0.0, 0.4)
            g = torch.Generator().manual_seed(76)

            def rand(*shape):
                return torch.randn(*shape, generator=g, dtype=torch.float64)

            pad = torch.zeros(3, 9, dtype=torch.bool)
            pad[0, 7:] = pad[2, 5:] = True  # text padding after 4 image tokens
            text_pad = torch.zeros(3, 6, dtype=torch.bool)
            text_pad[1, 3:] = True
            one_pad = torch.zeros(2, 6, dtype=torch.bool)
            one_pad[1, 4:] = True
            cases = [
                (
                    "vision mode, bottom block",
                    bottom,
                    rand(2, 5, 16),
                    5,
                    "vision",
                    None,
                ),
                (
                    "language mode with padding",
                    bottom,
                    rand(3, 6, 16),
                    0,
                    "language",
                    text_pad,
                ),
                (
                    "fusion, bottom block: 4 image + 5 text tokens",
                    bottom,
                    rand(3, 9, 16),
                    4,
                    "fusion",
                    pad,
                ),
                (
                    "fusion, top block with the VL expert",
                    top,
                    rand(3, 9, 16),
                    4,
                    "fusion",
                    pad,
                ),
                (
                    "fusion, bottom block, one image token",
                    bottom,
                    rand(2, 6, 16),
                    1,
                    "fusion",
                    one_pad,
                ),
                (
                    "vision mode, top block",
                    top,
                    rand(2, 4, 16),
                    4,
                    "vision",
                    None,
                ),
            ]
            with torch.no_grad():
                for label, block, x, n_img, mode, padding in cases:
                    want = block(x, n_img, mode, padding)
                    before = x.clone()
                    got = _run_case(
                        multiway_forward,
                        label,
                        block,
                        x,
                        n_img,
                        mode,
                        padding=padding,
                    )
                    if not torch.equal(x, before):
                        raise _Stop(
                            f"multiway_forward changed its input x in place ({label})"
                        )
                    if (
                        isinstance(got, torch.Tensor)
                        and got.shape == want.shape
                    ):
                        # name the first token whose output differs
                        err = (got.detach().double() - want).abs().amax(-1)
                        if (err > 1e-6).any() and torch.isfinite(got).all():
                            b, t = (int(i) for i in (err > 1e-6).nonzero()[0])
                            kind = (
                                "an image token"
                                if mode == "vision"
                                or (mode == "fusion" and t < n_img)
                                else "a text token"
                            )
                            raise _Stop(
                                f"the output of token {t} ({kind}) of example {b} differs by up to "
                                f"{err[b, t]:.3g} ({label})"
                            )
                    _compare(
                        got,
                        want,
                        f"the output ({label})",
                        rtol=1e-6,
                        atol=1e-8,
                    )
        return (
            "matches MultiwayBlock in vision, language and fusion modes, bottom and top blocks, with "
            "padding"
        )

    return _check("multiway_forward", multiway_forward, body)


def multiway_quiz(
    *,
    shared: int,
    experts: Mapping[str, int],
    dual_r1: float,
    fusion_r1: float,
    time_ratio: float,
) -> list[dict]:
    """The quiz of chapter 7h (``07h_multiway``): parameter counts of the shared attention and of each
    expert pool, the two modes' R@1, and the fusion encoder's time over the dual encoder's."""
    more = (
        "the experts"
        if sum(experts.values()) > shared
        else "the shared attention"
    )
    better = (
        "the dual encoder (ITC)"
        if dual_r1 > fusion_r1
        else "the fusion encoder (ITM)"
        if fusion_r1 > dual_r1
        else "both the same"
    )
    factor = [1, 10, 100, 1000]
    nearest = min(
        factor,
        key=lambda f: abs(math.log10(max(time_ratio, 1e-9)) - math.log10(f)),
    )
    return [
        _choice(
            "In a bottom block in fusion mode, which expert transforms the text tokens?",
            [
                "L-FFN, the language expert",
                "V-FFN, the vision expert",
                "VL-FFN, the vision-language expert",
            ],
            "L-FFN, the language expert",
            "Right: below the top blocks each token goes to its own modality's expert; only the top "
            "blocks route the fused sequence to VL-FFN. The attention is shared in every block.",
        ),
        _choice(
            "Which holds more parameters in this VLMo: the shared self-attention, or the experts together?",
            ["the shared attention", "the experts"],
            more,
            f"Right: {shared:,} in the attention, {sum(experts.values()):,} in the experts.",
        ),
        _choice(
            "Which mode retrieved the right caption first more often (R@1) in this run?",
            [
                "the dual encoder (ITC)",
                "the fusion encoder (ITM)",
                "both the same",
            ],
            better,
            f"Right: {dual_r1:.1%} as dual encoder, {fusion_r1:.1%} as fusion encoder.",
        ),
        _choice(
            "Roughly how many times longer did the fusion encoder take to score all pairs?",
            [f"about {f:,}×" for f in factor],
            f"about {nearest:,}×",
            f"Right: {time_ratio:.0f} times: it runs the network once per (image, caption) pair, the "
            "dual encoder once per image and once per caption.",
        ),
    ]


# ============================================================================ page 7j
def check_co_attention(co_attention: Callable) -> CheckResult:
    """Check ``co_attention(text, regions, text_pad, region_pad) -> (text_out, region_out)``: ViLBERT's two
    attentions with one head and no projections; the words ``[B, L, d]`` attend to the regions ``[B, R, d]``
    (queries from the words, keys and values the regions), the regions to the words, scaled by
    ``1/sqrt(d)``, each ignoring the keys its padding mask marks True. Against
    ``F.scaled_dot_product_attention``. Cases: no padding, padded regions, padded words, both, one region,
    as many words as regions.
    """

    def body() -> str:
        g = torch.Generator().manual_seed(77)

        def rand(*shape):
            return torch.randn(*shape, generator=g, dtype=torch.float64)

        def pads(B, n, lengths):
            p = torch.zeros(B, n, dtype=torch.bool)
            for b, k in enumerate(lengths):
                p[b, k:] = True
            return p

        cases = [
            (
                "no padding",
                rand(2, 5, 8),
                rand(2, 3, 8),
                pads(2, 5, [5, 5]),
                pads(2, 3, [3, 3]),
            ),
            (
                "padded regions",
                rand(3, 4, 8),
                rand(3, 5, 8),
                pads(3, 4, [4, 4, 4]),
                pads(3, 5, [2, 5, 3]),
            ),
            (
                "padded words",
                rand(3, 6, 4),
                rand(3, 3, 4),
                pads(3, 6, [2, 6, 4]),
                pads(3, 3, [3, 3, 3]),
            ),
            (
                "both padded",
                rand(2, 6, 8),
                rand(2, 4, 8),
                pads(2, 6, [3, 6]),
                pads(2, 4, [4, 1]),
            ),
            (
                "one region",
                rand(2, 4, 8),
                rand(2, 1, 8),
                pads(2, 4, [4, 2]),
                pads(2, 1, [1, 1]),
            ),
            (
                "as many words as regions",
                rand(2, 4, 6),
                rand(2, 4, 6),
                pads(2, 4, [4, 2]),
                pads(2, 4, [3, 4]),
            ),
        ]
        for label, text, regions, text_pad, region_pad in cases:
            want_t = F.scaled_dot_product_attention(
                text, regions, regions, attn_mask=~region_pad[:, None, :]
            )
            want_r = F.scaled_dot_product_attention(
                regions, text, text, attn_mask=~text_pad[:, None, :]
            )
            got = _pair(
                _run_case(
                    co_attention,
                    label,
                    text.clone(),
                    regions.clone(),
                    text_pad.clone(),
                    region_pad.clone(),
                ),
                "co_attention",
            )
            _compare(
                got[0],
                want_t,
                f"the words' output ({label})",
                rtol=1e-6,
                atol=1e-9,
            )
            _compare(
                got[1],
                want_r,
                f"the regions' output ({label})",
                rtol=1e-6,
                atol=1e-9,
            )
        return "matches scaled dot-product attention both ways, with padded words and regions"

    return _check("co_attention", co_attention, body)


def region_models_quiz(
    *,
    itm: Mapping[str, Mapping[str, float]],
    n_params: Mapping[str, int],
    tag_accuracy: float,
) -> list[dict]:
    """The quiz of chapter 7j (``07j_region_models``): ``itm`` (model -> "random" / "hard" -> accuracy),
    ``n_params`` (model -> parameter count) and the detector's tag accuracy."""
    region = [n for n in itm if n != "ViLT"]
    best_hard = max(region, key=lambda n: itm[n]["hard"])
    largest = max(n_params, key=n_params.get)
    return [
        _choice(
            "In ViLBERT's co-attention, the words' queries attend to …",
            [
                "the regions' keys and values",
                "the words' own keys and values",
                "both streams' keys and values, concatenated",
            ],
            "the regions' keys and values",
            "Right: two attentions with swapped keys and values: words read the regions, regions read "
            "the words.",
        ),
        _choice(
            "UNITER's conditional masking masks, in one example, …",
            [
                "its words or its regions, never both",
                "its words and its regions at once",
                "only its regions",
            ],
            "its words or its regions, never both",
            "Right: a masked word is always predicted from the whole image, a masked region from the "
            "whole caption.",
        ),
        _choice(
            "Which region model was most accurate on hard ITM (one word changed)?",
            region,
            best_hard,
            "Right: "
            + ", ".join(f"{n} {itm[n]['hard']:.1%}" for n in region)
            + " (one seed).",
        ),
        _choice(
            "Which model has the most parameters?",
            list(n_params),
            largest,
            f"Right: {largest} with {n_params[largest]:,}.",
        ),
        _number(
            "What share of the boxes does the detector's linear class head name correctly, in percent "
            "(rounded to a whole number)?",
            round(100 * tag_accuracy),
            f"Right: {tag_accuracy:.1%}: the oracle's region features already separate the shapes.",
        ),
    ]
