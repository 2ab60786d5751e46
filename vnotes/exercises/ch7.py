"""Chapter 7, pages 7a (CLIP), 7b (ViLT), 7g (bridges to a frozen language model) and 7i (DALL·E 2):
CLIP's symmetric loss with a learned temperature, ViLT's joint input sequence, the Q-Former's three
attention masks, unCLIP's guided prior, and the four pages' quizzes. (Pages 7c-7f, 7h and 7j: ``ch7_more``.)"""

from __future__ import annotations

import math
from typing import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F

from .core import CheckResult, _check, _choice, _compare, _number, _run, _Stop

__all__ = [
    "check_clip_loss",
    "clip_quiz",
    "check_vilt_embed",
    "vilt_quiz",
    "check_qformer_mask",
    "bridges_quiz",
    "check_unclip_guided_noise",
    "dalle2_quiz",
]


def _run_case(fn: Callable, label: str, *args, **kwargs):
    """:func:`_run`, with the case named when the reader's function raises (a "not yet" stays as it is)."""
    try:
        return _run(fn, *args, **kwargs)
    except _Stop as stop:
        if str(stop).startswith("not yet"):
            raise
        raise _Stop(f"{stop} ({label})") from None


# ============================================================================ page 7a: CLIP
def _clip_reference(img, txt, t, max_scale=100.0):
    v, w = F.normalize(img, dim=-1), F.normalize(txt, dim=-1)
    logits = t.exp().clamp(max=max_scale) * v @ w.T
    labels = torch.arange(logits.shape[0])
    # one cross-entropy over the rows (image -> text), one over the columns (text -> image)
    return 0.5 * (
        F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)
    )


def check_clip_loss(clip_loss: Callable) -> CheckResult:
    """Check ``clip_loss(image_features, text_features, logit_scale, max_scale=100.0) -> loss``: CLIP's
    symmetric contrastive loss (Radford et al., 2021) on ``[B, E]`` features that are not yet normalised,
    with the learned log inverse temperature ``logit_scale`` = t (a 0-d tensor; the logits are
    ``exp(t)·v·w``, ``exp(t)`` clipped at ``max_scale``), against ``F.cross_entropy`` over the rows and over
    the columns of the logits, averaged. Cases: τ = 0.07, features of unit length, an asymmetric batch,
    ``exp(t)`` above the clip, a batch of one pair; then the gradient reaching ``logit_scale`` and the
    image features.
    """

    def body() -> str:
        g = torch.Generator().manual_seed(70)

        def rand(*shape):
            x = torch.randn(*shape, generator=g, dtype=torch.float64)
            # rows of different lengths: only their directions may count
            return x * (0.5 + 3 * torch.rand(shape[0], 1, generator=g))

        unit = F.normalize(rand(6, 4), dim=-1)
        cases = [
            (
                "B=8, E=16, τ=0.07",
                rand(8, 16),
                rand(8, 16),
                math.log(1 / 0.07),
            ),
            ("features of unit length, t=0.5", unit, unit.flip(0), 0.5),
            (
                "B=5, E=3, exp(t)=200 clipped to 100",
                rand(5, 3),
                rand(5, 3),
                math.log(200.0),
            ),
            ("B=12, E=8, t=2", rand(12, 8), rand(12, 8), 2.0),
            ("a batch of one pair", rand(1, 4), rand(1, 4), 1.0),
        ]
        for label, img, txt, t in cases:
            t = torch.tensor(t, dtype=torch.float64)
            want = _clip_reference(img, txt, t)
            got = _run_case(
                clip_loss, label, img.clone(), txt.clone(), t.clone()
            )
            if isinstance(got, torch.Tensor) and got.numel() == 1:
                got = got.reshape(())
            _compare(got, want, f"the loss ({label})", rtol=1e-6, atol=1e-9)
        # the temperature is learned: the loss must stay differentiable in logit_scale
        img = rand(7, 5).requires_grad_(True)
        txt = rand(7, 5)
        t = torch.tensor(2.5, dtype=torch.float64, requires_grad=True)
        got = _run_case(clip_loss, "gradient case", img, txt, t)
        if not isinstance(got, torch.Tensor) or not got.requires_grad:
            raise _Stop(
                "the loss carries no gradient (was a tensor turned into a float?): "
                "the temperature could not be learned"
            )
        try:
            g_img, g_t = torch.autograd.grad(
                got.sum(), [img, t], allow_unused=True
            )
        except RuntimeError as e:
            raise _Stop(
                f"backward through your loss failed: {str(e).splitlines()[0][:120]}"
            ) from None
        if g_t is None:
            raise _Stop(
                "no gradient reaches logit_scale: the temperature could not be learned"
            )
        r_img, r_t = torch.autograd.grad(
            _clip_reference(img, txt, t), [img, t]
        )
        _compare(
            g_t,
            r_t,
            "the gradient with respect to logit_scale",
            rtol=1e-6,
            atol=1e-9,
        )
        if g_img is None:
            raise _Stop("no gradient reaches the image features")
        _compare(
            g_img,
            r_img,
            "the gradient with respect to the image features",
            rtol=1e-6,
            atol=1e-9,
        )
        return (
            "matches F.cross_entropy in both directions, with the clip at 100, a batch of one, "
            "and the same gradients for t and the features"
        )

    return _check("clip_loss", clip_loss, body)


def clip_quiz(
    *,
    batch_size: int,
    temperature: float,
    init_temperature: float,
    prompt_sets: Sequence[str],
    chosen_prompts: str,
) -> list[dict]:
    """The quiz of page 7a (``07a_clip``): ``batch_size`` of training, the learned ``temperature`` τ and
    its initial value, the candidate prompt sets and the one chosen on validation."""
    prompt_sets = list(prompt_sets)
    went = (
        "it went down"
        if temperature < init_temperature
        else "it stayed or went up"
    )
    return [
        _choice(
            "CLIP's loss averages two cross-entropies over the B × B logits. Which two?",
            [
                "one over each row (image to caption) and one over each column (caption to image)",
                "one over the diagonal entries and one over the off-diagonal entries",
                "the same row-wise one, at two temperatures",
            ],
            "one over each row (image to caption) and one over each column (caption to image)",
            "Right: each image picks its caption among B, and each caption its image among B; "
            "a loss over the rows alone never asks the second question.",
        ),
        _number(
            f"A CLIP that cannot tell the pairs apart gives every logit of a row the same value. "
            f"What is its loss (in nats, two decimals) with the page's batch of {batch_size} pairs?",
            round(math.log(batch_size), 2),
            f"Right: a uniform softmax gives the true caption 1/{batch_size}, so the loss is "
            f"ln {batch_size} = {math.log(batch_size):.2f}.",
            precision=3,
        ),
        _choice(
            f"The temperature started at {init_temperature:g}. Where did training take it?",
            ["it went down", "it stayed or went up"],
            went,
            f"Right: the learned τ is {temperature:.4f} (the logits are scaled by 1/τ = "
            f"{1 / temperature:.1f}).",
        ),
        _choice(
            "Which prompt set did the page choose, on validation images only?",
            prompt_sets,
            chosen_prompts,
            f"Right: {chosen_prompts!r}, the smallest set within 0.5 % of the best validation accuracy.",
        ),
    ]


# ============================================================================ page 7b: ViLT
def check_vilt_embed(vilt_embed: Callable) -> CheckResult:
    """Check ``vilt_embed(word_vectors, patch_vectors, text_pos, image_cls, image_pos, type_embed, ids,
    pad_id=0) -> (x, pad)``: ViLT's joint input (Kim et al., 2021), ``[t_1..t_L] + T_pos + t_type`` then
    ``[v_cls; v_1..v_N] + V_pos + v_type``, and its key-padding mask (True at [PAD], never on an image
    token), against :meth:`vnotes.multimodal.vilt.ViLT.embed` of a small random ViLT. ``word_vectors``
    ``[B, L, d]``, ``patch_vectors`` ``[B, N, d]``, ``text_pos`` ``[1, L_max, d]``, ``image_cls``
    ``[1, 1, d]``, ``image_pos`` ``[1, 1 + N, d]``, ``type_embed`` ``[2, d]`` (row 0 text, row 1 image).
    Cases: padded captions shorter than ``L_max``, captions of full length, one one-word caption, another
    ``pad_id``, an image of a single patch.
    """

    def body() -> str:
        from ..multimodal.data import normalize_pixels
        from ..multimodal.vilt import ViLT

        def build(image_size):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(71)
                model = ViLT(
                    12,
                    image_size=image_size,
                    patch_size=8,
                    dim=8,
                    depth=1,
                    num_heads=2,
                    max_text_len=6,
                ).eval()
                with torch.no_grad():
                    for p in (
                        model.text_pos,
                        model.image_cls,
                        model.image_pos,
                        model.modality_embed.weight,
                        model.word_embed.weight,
                    ):
                        p.copy_(torch.randn(p.shape))
            return model

        g = torch.Generator().manual_seed(72)
        four, one = build(16), build(8)

        def ids_of(rows, pad=0):
            L = max(len(r) for r in rows)
            return torch.tensor([r + [pad] * (L - len(r)) for r in rows])

        cases = [
            (
                "3 padded captions of 4 tokens",
                four,
                ids_of([[4, 5, 6, 7], [4, 8, 9], [4, 10]]),
                0,
            ),
            (
                "2 captions of full length 6",
                four,
                ids_of([[4, 5, 6, 7, 8, 9], [4, 11, 10, 9, 8, 7]]),
                0,
            ),
            ("one one-word caption", four, ids_of([[5]]), 0),
            (
                "pad_id=3",
                four,
                ids_of([[4, 5, 6, 2], [4, 7]], pad=3),
                3,
            ),
            (
                "images of a single patch",
                one,
                ids_of([[4, 5, 6], [4, 9]]),
                0,
            ),
        ]
        for label, model, ids, pad_id in cases:
            model.pad_id = pad_id
            size = model.grid * 8
            images = torch.rand(ids.shape[0], 3, size, size, generator=g)
            with torch.no_grad():
                want_x, want_pad = model.embed(images, ids)
                words = model.word_embed(ids)
                patches, _ = model.patch_embed(normalize_pixels(images))
                args = (
                    words,
                    patches,
                    model.text_pos.detach().clone(),
                    model.image_cls.detach().clone(),
                    model.image_pos.detach().clone(),
                    model.modality_embed.weight.detach().clone(),
                    ids.clone(),
                )
                out = _run_case(vilt_embed, label, *args, pad_id=pad_id)
            if not isinstance(out, (tuple, list)) or len(out) != 2:
                raise _Stop(
                    f"vilt_embed should return two tensors (x, pad), got {type(out).__name__}"
                    + (
                        f" of length {len(out)}"
                        if isinstance(out, (tuple, list))
                        else ""
                    )
                )
            x, pad = out
            _compare(
                x, want_x, f"the sequence x ({label})", rtol=1e-5, atol=1e-6
            )
            if not isinstance(pad, torch.Tensor):
                raise _Stop(
                    f"pad is a {type(pad).__name__}, not a tensor ({label})"
                )
            if pad.dtype != torch.bool:
                raise _Stop(
                    f"pad is {pad.dtype}; a key-padding mask is boolean, True at [PAD] ({label})"
                )
            if tuple(pad.shape) != tuple(want_pad.shape):
                raise _Stop(
                    f"pad has shape {tuple(pad.shape)}, expected {tuple(want_pad.shape)} ({label})"
                )
            wrong = torch.nonzero(pad != want_pad)
            if len(wrong):
                b, j = (int(n) for n in wrong[0])
                L = ids.shape[1]
                where = (
                    f"word position {j}" if j < L else f"image token {j - L}"
                )
                raise _Stop(
                    f"pad at row {b}, {where} is {bool(pad[b, j])}, expected {bool(want_pad[b, j])} ({label})"
                )
        return (
            "matches ViLT.embed: the joint sequence and its padding mask, with padded and full-length "
            "captions, another pad_id and a single patch"
        )

    return _check("vilt_embed", vilt_embed, body)


def vilt_quiz(
    *,
    sequence_length: int,
    text_length: int,
    num_patches: int,
    itm_by_changed_word: Mapping[str, float],
    mlm_accuracy: Mapping[str, float],
) -> list[dict]:
    """The quiz of page 7b (``07b_vilt``): the joint sequence's length (measured from ``ViLT.embed``), the
    caption length and the number of patches, ITM accuracy by changed word and masked-word accuracy."""
    if sequence_length != text_length + 1 + num_patches:
        raise ValueError(
            f"sequence_length={sequence_length} is not text_length + 1 + num_patches = "
            f"{text_length + 1 + num_patches}"
        )
    worst = min(itm_by_changed_word, key=itm_by_changed_word.get)
    best = max(mlm_accuracy, key=mlm_accuracy.get)
    return [
        _choice(
            "How does ViLT's single Transformer know whether a token is a word or a patch?",
            [
                "a learned modality-type embedding is added to every token",
                "words and patches go through separate layers first",
                "only a [SEP] token between them tells them apart",
            ],
            "a learned modality-type embedding is added to every token",
            "Right: row 0 of the type embedding is added to every word, row 1 to every image token "
            "(their position embeddings are separate tables too).",
        ),
        _number(
            f"A caption is padded to {text_length} tokens and the image cut into {num_patches} patches. "
            "How many tokens long is the sequence ViLT's Transformer reads?",
            sequence_length,
            f"Right: {text_length} text tokens + the image [class] token + {num_patches} patches "
            f"= {sequence_length}.",
        ),
        _choice(
            "ITM with one word of the caption changed: which changed word did ViLT catch least often?",
            list(itm_by_changed_word),
            worst,
            f"Right: {itm_by_changed_word[worst]:.3f} when the {worst} word changed.",
        ),
        _choice(
            "Masked-word prediction ('a small [MASK] circle'): which kind of word did ViLT fill in best?",
            list(mlm_accuracy),
            best,
            f"Right: {mlm_accuracy[best]:.3f} for the {best} word.",
        ),
    ]


# ============================================================================ page 7g: the Q-Former's masks
def check_qformer_mask(qformer_mask: Callable) -> CheckResult:
    """Check ``qformer_mask(num_queries, text_len, mode) -> mask``: the boolean ``[Q + L, Q + L]``
    self-attention mask over ``[queries; text]`` of the Q-Former (Li et al., 2023), True where the row
    token may attend to the column token, for ``mode`` "itc" (uni-modal), "itm" (bi-directional) and
    "itg" (multimodal causal), against :func:`vnotes.multimodal.objectives.qformer_mask`. Cases: each
    mode with 4 queries and 5 words, one query and one word, 8 queries and 3 words, 2 and 6.
    """

    def body() -> str:
        from ..multimodal.objectives import qformer_mask as reference

        cases = [
            (Q, L, mode)
            for Q, L in ((4, 5), (1, 1), (8, 3), (2, 6))
            for mode in ("itc", "itg", "itm")
        ]
        for Q, L, mode in cases:
            label = f"mode {mode!r}, {Q} queries, {L} words"
            want = reference(Q, L, mode)
            got = _run_case(qformer_mask, label, Q, L, mode)
            if not isinstance(got, torch.Tensor):
                raise _Stop(
                    f"the mask ({label}) is a {type(got).__name__}, not a tensor"
                )
            if got.dtype != torch.bool:
                raise _Stop(
                    f"the mask ({label}) is {got.dtype}; the book's masks are boolean (True = may attend)"
                )
            if tuple(got.shape) != tuple(want.shape):
                raise _Stop(
                    f"the mask ({label}) has shape {tuple(got.shape)}, expected {tuple(want.shape)}"
                )
            wrong = torch.nonzero(got != want)
            if len(wrong):
                i, j = (int(n) for n in wrong[0])

                def name(k):
                    return f"query {k}" if k < Q else f"word {k - Q}"

                verb = "may attend" if bool(got[i, j]) else "may not attend"
                raise _Stop(
                    f"({label}) in yours {name(i)} {verb} to {name(j)}; the reference says the opposite "
                    f"({len(wrong)} of {want.numel()} entries differ)"
                )
        return "matches the book's masks for ITC, ITM and ITG with 1 to 8 queries and 1 to 6 words"

    return _check("qformer_mask", qformer_mask, body)


def bridges_quiz(
    *,
    num_queries: int,
    text_len: int,
    prompt_tokens: Mapping[str, int],
    vqa_accuracy: Mapping[str, float],
) -> list[dict]:
    """The quiz of page 7g (``07g_bridges``): the Q-Former's queries and caption length, each bridge's
    soft-prompt length and VQA accuracy (bridge name -> number)."""
    Q, L = num_queries, text_len
    allowed = Q * Q + L * Q + L * (L + 1) // 2
    longest = max(prompt_tokens, key=prompt_tokens.get)
    best = max(vqa_accuracy, key=vqa_accuracy.get)
    return [
        _choice(
            "Under the ITC mask, may a query attend to a caption word?",
            [
                "no: queries see only queries, and words only words",
                "yes: queries see everything, only words are restricted",
            ],
            "no: queries see only queries, and words only words",
            "Right: ITC compares two separate embeddings, the queries' and the caption's; letting "
            "either see the other would leak the answer into the comparison.",
        ),
        _number(
            f"Stage 1 used {Q} queries and captions of {L} tokens. How many (row, column) pairs does "
            "the ITG mask allow?",
            allowed,
            f"Right: {Q}·{Q} among the queries, {L}·{Q} from words to queries, and "
            f"{L}·{L + 1}/2 from words to themselves and earlier words: {allowed}.",
        ),
        _choice(
            "Which bridge hands the frozen language model the longer soft prompt?",
            list(prompt_tokens),
            longest,
            "Right: "
            + ", ".join(f"{k}: {v} tokens" for k, v in prompt_tokens.items())
            + ".",
        ),
        _choice(
            "Which bridge answered more test questions right?",
            list(vqa_accuracy),
            best,
            "Right: "
            + ", ".join(f"{k}: {v:.3f}" for k, v in vqa_accuracy.items())
            + ".",
        ),
    ]


# ============================================================================ page 7i: DALL·E 2
def check_unclip_guided_noise(unclip_guided_noise: Callable) -> CheckResult:
    """Check ``unclip_guided_noise(prior, x_t, t, text_emb, guidance, alpha_bar) -> eps``: the guided noise
    prediction of unCLIP's prior (Ramesh et al., 2022). ``prior(x_t, t, text_emb)`` predicts the *clean*
    embedding with the caption, ``prior(x_t, t, None)`` without it; each is read as a noise prediction
    through ``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps``, and the two are combined as
    ``(1 + w) eps_cond - w eps_uncond`` (classifier-free guidance, the book's convention: w = 0 is no
    guidance). Against ``GaussianDiffusion.predict_noise`` of :class:`vnotes.multimodal.dalle2.NoiseFromClean`.
    Cases: w = 0, w = 3, the first and the last step, a batch of one.
    """

    def body() -> str:
        from ..generative import GaussianDiffusion
        from ..multimodal.dalle2 import NoiseFromClean, PriorMLP

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(73)
            prior = PriorMLP(embed_dim=6, hidden=16, depth=1).eval()
            with torch.no_grad():
                prior.null_cond.copy_(torch.randn(16))
        diffusion = GaussianDiffusion(50, "cosine", clip_denoised=False)
        alpha_bar = diffusion.alpha_bar.clone()
        reader = NoiseFromClean(prior, diffusion)
        g = torch.Generator().manual_seed(74)

        def rand(*shape):
            return torch.randn(*shape, generator=g)

        cases = [
            ("w = 0 (no guidance)", 5, torch.tensor([3, 10, 20, 35, 49]), 0.0),
            ("w = 3", 4, torch.tensor([1, 17, 30, 44]), 3.0),
            (
                "w = 1.5, the first and the last step",
                2,
                torch.tensor([0, 49]),
                1.5,
            ),
            ("a batch of one, w = 0.5", 1, torch.tensor([25]), 0.5),
        ]
        for label, B, t, w in cases:
            x, z = rand(B, 6), F.normalize(rand(B, 6), dim=-1) * 6**0.5
            with torch.no_grad():
                want = diffusion.predict_noise(reader, x, t, z, w)
                before = x.clone()
                got = _run_case(
                    unclip_guided_noise,
                    label,
                    prior,
                    x,
                    t.clone(),
                    z.clone(),
                    w,
                    alpha_bar.clone(),
                )
            if not torch.equal(x, before):
                raise _Stop(
                    f"unclip_guided_noise changed x_t in place ({label})"
                )
            _compare(
                got,
                want,
                f"the noise prediction ({label})",
                rtol=1e-4,
                atol=1e-4,
            )
        return (
            "matches the book's guided prior: clean predictions read as noise, and (1 + w)·cond − "
            "w·uncond at four guidance scales and both ends of the schedule"
        )

    return _check("unclip_guided_noise", unclip_guided_noise, body)


def dalle2_quiz(
    *,
    decoder_guidance: float,
    decoder_grid: Sequence[float],
    true_embedding_accuracy: float,
    caption_accuracy: float,
) -> list[dict]:
    """The quiz of page 7i (``07i_dalle2``): the decoder's guidance chosen on validation and its grid, the
    judge's agreement with redraws from true image embeddings and with drawings from captions."""
    grid = [f"{w:g}" for w in decoder_grid]
    chosen = f"{decoder_guidance:g}"
    weaker = (
        "drawings from captions, through the prior"
        if caption_accuracy < true_embedding_accuracy
        else "redraws from the true image embeddings"
    )
    return [
        _choice(
            "What does the prior's network predict from a noised embedding, its step and the caption's z_t?",
            [
                "the clean CLIP image embedding",
                "the noise that was added",
                "the caption's text embedding",
            ],
            "the clean CLIP image embedding",
            "Right: as in the paper it predicts the clean z_i (MSE); the samplers read it as a noise "
            "prediction through x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps.",
        ),
        _choice(
            "In the book's convention, (1 + w)·eps_cond − w·eps_uncond, what does w = 0 give?",
            [
                "the conditional prediction alone",
                "the unconditional prediction alone",
                "the average of the two predictions",
            ],
            "the conditional prediction alone",
            "Right: no guidance; w > 0 pushes further away from the unconditional prediction.",
        ),
        _choice(
            "Which decoder guidance scale did the page choose on validation?",
            grid,
            chosen,
            f"Right: w = {chosen}, the best judged redraws on the validation images.",
        ),
        _choice(
            "Where did the judge agree less with what was asked?",
            [
                "drawings from captions, through the prior",
                "redraws from the true image embeddings",
            ],
            weaker,
            f"Right: {caption_accuracy:.3f} from captions, {true_embedding_accuracy:.3f} from true "
            "image embeddings.",
        ),
    ]
