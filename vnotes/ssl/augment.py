"""Random views of a batch of images, sampled per image and computed in one pass (chapter 5, 数据增强).

SimCLR (Chen et al., 2020) found that the composition *random crop + colour distortion* matters
most. ``torchvision.transforms.v2`` draws one set of random parameters per call, so a batch would
get the same crop everywhere; calling it image by image costs ~0.3 ms per 32x32 image here, more
than the encoder. :class:`ViewAugment` draws the same random choices as the torchvision
pipeline (:func:`torchvision_pipeline`), one set per image, and applies them to the whole batch
at once with tensor ops. The tests check it against ``torchvision.transforms.v2.functional``
image by image, for the same parameters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import Tensor

# ITU-R 601-2 luma: the grey level of an RGB pixel, as torchvision's rgb_to_grayscale
LUMA = (0.2989, 0.587, 0.114)
JITTER_OPS = ("brightness", "contrast", "saturation", "hue")


@dataclass
class ViewParams:
    """The random choices behind one batch of views, one row per image."""

    top: Tensor  # [B] crop box, pixels
    left: Tensor  # [B]
    height: Tensor  # [B]
    width: Tensor  # [B]
    flip: Tensor  # [B] bool, horizontal flip
    jitter: Tensor  # [B] bool, colour jitter applied
    factors: (
        Tensor  # [B, 4] brightness, contrast, saturation factors and hue shift
    )
    order: Tensor  # [B, 4] order of the four jitter operations (indices into JITTER_OPS)
    gray: Tensor  # [B] bool, converted to grey
    solarize: Tensor  # [B] bool, solarised

    def __len__(self) -> int:
        return self.top.shape[0]

    def select(self, index: int) -> dict:
        """Plain Python values for image ``index`` (for the per-image reference)."""
        return {
            f.name: getattr(self, f.name)[index].tolist() for f in fields(self)
        }


def grayscale(x: Tensor) -> Tensor:
    """Grey level 0.2989 R + 0.587 G + 0.114 B of ``[..., 3, H, W]`` images, as ``[..., 1, H, W]``."""
    r, g, b = x.unbind(-3)
    return (LUMA[0] * r + LUMA[1] * g + LUMA[2] * b).unsqueeze(-3)


def _blend(x: Tensor, other: Tensor, factor: Tensor) -> Tensor:
    """factor * x + (1 - factor) * other, clipped to [0, 1]; ``factor`` is one number per image ``[B]``."""
    f = factor.view(-1, 1, 1, 1)
    return (f * x + (1 - f) * other).clamp(0, 1)


def adjust_brightness(x: Tensor, factor: Tensor) -> Tensor:
    """Scale intensities: blend with black, factor * x."""
    return (x * factor.view(-1, 1, 1, 1)).clamp(0, 1)


def adjust_contrast(x: Tensor, factor: Tensor) -> Tensor:
    """Blend with the image's mean grey level."""
    return _blend(x, grayscale(x).mean(dim=(-3, -2, -1), keepdim=True), factor)


def adjust_saturation(x: Tensor, factor: Tensor) -> Tensor:
    """Blend with the image's own grey version."""
    return _blend(x, grayscale(x), factor)


def _rgb_to_hsv(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Hue in [0, 1), saturation and value of RGB images (the hexcone model of Smith, 1978), each ``[B, H, W]``."""
    r, g, b = x.unbind(-3)
    maxc = x.amax(dim=-3)
    chroma = maxc - x.amin(dim=-3)
    # max(., tiny) only guards 0/0: where chroma = 0 the hue is set to 0 below, and s = 0
    s = chroma / maxc.clamp_min(1e-12)
    inv = 1.0 / chroma.clamp_min(1e-12)
    # hue in sixths of a turn, measured from the largest channel: (G-B)/C, (B-R)/C + 2, (R-G)/C + 4
    from_r = (maxc == r).to(x.dtype)
    from_g = (maxc == g).to(x.dtype) * (1 - from_r)
    from_b = 1 - from_r - from_g
    h6 = (
        from_r * (g - b) * inv
        + from_g * ((b - r) * inv + 2)
        + from_b * ((r - g) * inv + 4)
    )
    h = h6 / 6
    h = h - h.floor()  # wrap into [0, 1)
    return h * (chroma > 0).to(x.dtype), s, maxc


def _hsv_to_rgb(h: Tensor, s: Tensor, v: Tensor) -> Tensor:
    """Hue in [0, 1), saturation, value ``[B, H, W]`` back to RGB ``[B, 3, H, W]``."""
    # channel n of the hexcone: v - v s clamp(min(k, 4 - k), 0, 1), k = (n + 6h) mod 6, n = 5, 3, 1 for R, G, B
    out = []
    for n in (5.0, 3.0, 1.0):
        k = n + 6 * h
        k = k - 6 * (k / 6).floor()
        out.append(v - v * s * torch.minimum(k, 4 - k).clamp(0, 1))
    return torch.stack(out, dim=-3)


def rgb_to_hsv(x: Tensor) -> Tensor:
    """RGB ``[..., 3, H, W]`` in [0, 1] to HSV with hue in [0, 1)."""
    return torch.stack(_rgb_to_hsv(x), dim=-3)


def hsv_to_rgb(x: Tensor) -> Tensor:
    """HSV ``[..., 3, H, W]`` (hue in [0, 1)) back to RGB."""
    return _hsv_to_rgb(*x.unbind(-3))


def adjust_hue(x: Tensor, shift: Tensor) -> Tensor:
    """Rotate the hue by ``shift`` turns (in [-0.5, 0.5]) per image."""
    h, s, v = _rgb_to_hsv(x)
    h = h + shift.view(-1, 1, 1)
    h = h - h.floor()
    return _hsv_to_rgb(h, s, v).clamp(0, 1)


def solarize(x: Tensor, threshold: float = 0.5) -> Tensor:
    """Invert every pixel value at or above ``threshold`` (BYOL's asymmetric augmentation)."""
    return torch.where(x >= threshold, 1.0 - x, x)


def _interpolation_matrix(
    start: Tensor, extent: Tensor, full: int, size: int
) -> Tensor:
    """``[B, size, full]`` weights that resample the span [start, start + extent) of an axis to ``size`` points.

    Source coordinate of output pixel o: s = (o + 1/2) * extent / size - 1/2, clamped to the span
    (the half-pixel convention of ``F.interpolate(..., align_corners=False)``); each row holds the
    two linear-interpolation weights (1 - frac, frac) of pixels floor(s) and floor(s) + 1.
    """
    out = torch.arange(size, device=start.device, dtype=torch.float32)
    ext = extent.to(torch.float32)[:, None]  # [B, 1]
    src = ((out[None] + 0.5) * ext / size - 0.5).clamp(min=0)  # [B, size]
    i0 = src.floor().clamp(max=ext - 1)
    i1 = torch.minimum(i0 + 1, ext - 1)
    frac = (src - i0).clamp(0, 1)
    offset = start[:, None]
    w0 = (
        F.one_hot(i0.long() + offset, full).to(torch.float32)
        * (1 - frac)[..., None]
    )
    w1 = (
        F.one_hot(i1.long() + offset, full).to(torch.float32) * frac[..., None]
    )
    return w0 + w1  # [B, size, full]


def resized_crop(
    x: Tensor,
    top: Tensor,
    left: Tensor,
    height: Tensor,
    width: Tensor,
    size: int,
    flip: Tensor | None = None,
) -> Tensor:
    """Crop box ``(top, left, height, width)`` of each image ``[B, C, H, W]``, resize it bilinearly to ``size``.

    Bilinear resampling is separable: out = R_y x R_x^T with one interpolation matrix per axis and
    image, so the whole batch is two batched matrix products. ``flip`` ``[B]`` mirrors the chosen
    images horizontally (the rows of R_x reversed).
    """
    B, C, H, W = x.shape
    rows = _interpolation_matrix(top, height, H, size)  # [B, size, H]
    cols = _interpolation_matrix(left, width, W, size)  # [B, size, W]
    if flip is not None:
        cols = torch.where(flip.view(-1, 1, 1), cols.flip(1), cols)
    # out_c = R_y x_c R_x^T                                                       [B, C, size, size]
    return (
        rows[:, None].to(x.dtype)
        @ x
        @ cols[:, None].transpose(-1, -2).to(x.dtype)
    )


def _uniform(n: int, low: float, high: float, device, generator) -> Tensor:
    return low + (high - low) * torch.rand(
        n, device=device, generator=generator
    )


@dataclass
class ViewAugment:
    """SimCLR's augmentation (Chen et al., 2020, Appendix A), one random draw per image.

    random resized crop (area ``scale``, aspect ``ratio``) -> horizontal flip -> colour jitter with
    probability ``jitter_p`` (brightness, contrast, saturation, hue in random order) -> greyscale with
    probability ``gray_p`` -> solarise with probability ``solarize_p`` (BYOL, DINO). Gaussian blur is
    left out, as SimCLR did for 32x32 CIFAR images.
    """

    size: int = 32
    scale: tuple[float, float] = (0.2, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1
    jitter_p: float = 0.8
    gray_p: float = 0.2
    solarize_p: float = 0.0

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError(
                f"size={self.size} must be a positive number of pixels"
            )
        if not 0 < self.scale[0] <= self.scale[1] <= 1:
            raise ValueError(
                f"scale={self.scale} must satisfy 0 < low <= high <= 1 (fractions of the image area)"
            )
        if not 0 < self.ratio[0] <= self.ratio[1]:
            raise ValueError(
                f"ratio={self.ratio} must satisfy 0 < low <= high"
            )
        for name in ("flip_p", "jitter_p", "gray_p", "solarize_p"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(
                    f"{name}={getattr(self, name)} must be a probability in [0, 1]"
                )
        if not 0 <= self.hue <= 0.5:
            raise ValueError(f"hue={self.hue} must lie in [0, 0.5]")
        for name in ("brightness", "contrast", "saturation"):
            if getattr(self, name) < 0:
                raise ValueError(
                    f"{name}={getattr(self, name)} must be non-negative"
                )

    def sample(
        self,
        batch: int,
        height: int,
        width: int,
        device: torch.device | str = "cpu",
        generator: torch.Generator | None = None,
    ) -> ViewParams:
        """Draw the random choices for ``batch`` images of ``height x width`` pixels."""
        crop = self._sample_crops(batch, height, width, device, generator)
        r = lambda: torch.rand(batch, device=device, generator=generator)
        factors = torch.stack(
            [
                _uniform(
                    batch,
                    max(0.0, 1 - self.brightness),
                    1 + self.brightness,
                    device,
                    generator,
                ),
                _uniform(
                    batch,
                    max(0.0, 1 - self.contrast),
                    1 + self.contrast,
                    device,
                    generator,
                ),
                _uniform(
                    batch,
                    max(0.0, 1 - self.saturation),
                    1 + self.saturation,
                    device,
                    generator,
                ),
                _uniform(batch, -self.hue, self.hue, device, generator),
            ],
            dim=1,
        )
        order = torch.rand(
            batch, 4, device=device, generator=generator
        ).argsort(dim=1)
        return ViewParams(
            *crop,
            flip=r() < self.flip_p,
            jitter=r() < self.jitter_p,
            factors=factors,
            order=order,
            gray=r() < self.gray_p,
            solarize=r() < self.solarize_p,
        )

    def _sample_crops(
        self, batch: int, height: int, width: int, device, generator
    ) -> tuple[Tensor, ...]:
        """torchvision's RandomResizedCrop rule: up to 10 tries of (area, aspect); else a central crop."""
        tries = 10
        area = height * width
        target = area * _uniform(
            batch * tries, *self.scale, device, generator
        ).view(batch, tries)
        log_r = _uniform(
            batch * tries,
            math.log(self.ratio[0]),
            math.log(self.ratio[1]),
            device,
            generator,
        )
        aspect = torch.exp(log_r).view(batch, tries)
        w = torch.sqrt(target * aspect).round().long()
        h = torch.sqrt(target / aspect).round().long()
        ok = (w > 0) & (w <= width) & (h > 0) & (h <= height)  # [B, tries]
        first = torch.where(
            ok.any(1),
            ok.float().argmax(1),
            torch.zeros(batch, dtype=torch.long, device=device),
        )
        w = w.gather(1, first[:, None])[:, 0]
        h = h.gather(1, first[:, None])[:, 0]
        # fallback: the largest central crop whose aspect lies inside ratio
        in_ratio = width / height
        if in_ratio < self.ratio[0]:
            fw, fh = width, int(round(width / self.ratio[0]))
        elif in_ratio > self.ratio[1]:
            fw, fh = int(round(height * self.ratio[1])), height
        else:
            fw, fh = width, height
        found = ok.any(1)
        w = torch.where(found, w, torch.full_like(w, fw))
        h = torch.where(found, h, torch.full_like(h, fh))
        top = (
            (
                torch.rand(batch, device=device, generator=generator)
                * (height - h + 1)
            )
            .floor()
            .long()
        )
        left = (
            (
                torch.rand(batch, device=device, generator=generator)
                * (width - w + 1)
            )
            .floor()
            .long()
        )
        top = torch.where(found, top, (height - h) // 2)
        left = torch.where(found, left, (width - w) // 2)
        return top, left, h, w

    def apply(self, x: Tensor, p: ViewParams) -> Tensor:
        """Apply drawn parameters ``p`` to images ``x`` ``[B, 3, H, W]`` in [0, 1] -> ``[B, 3, size, size]``."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(
                f"expected RGB images [B, 3, H, W], got shape {tuple(x.shape)}"
            )
        if len(p) != x.shape[0]:
            raise ValueError(
                f"{len(p)} sets of parameters for {x.shape[0]} images"
            )
        v = resized_crop(
            x.float(), p.top, p.left, p.height, p.width, self.size, flip=p.flip
        )
        v = self._jitter(v, p)
        # greyscale: blend towards the grey image where chosen (no branch per image)
        g = p.gray.to(v.dtype).view(-1, 1, 1, 1)
        v = v + g * (grayscale(v) - v)
        if p.solarize.any():
            v[p.solarize] = solarize(v[p.solarize])
        return v

    @staticmethod
    def _jitter(v: Tensor, p: ViewParams) -> Tensor:
        """Colour jitter with a random order of the four operations per image.

        At each of the four positions the batch is sorted by the operation it applies there, so each
        operation runs once on a contiguous slice; images without jitter form a fifth, untouched group.
        """
        ops = (
            adjust_brightness,
            adjust_contrast,
            adjust_saturation,
            adjust_hue,
        )
        current = torch.arange(
            v.shape[0], device=v.device
        )  # original index of each row of v
        for position in range(4):
            op_here = torch.where(
                p.jitter,
                p.order[:, position],
                torch.full_like(p.order[:, 0], len(ops)),
            )
            perm = op_here[current].argsort(stable=True)
            current, v = current[perm], v[perm]
            counts = torch.bincount(
                op_here[current], minlength=len(ops) + 1
            ).tolist()
            chunks, start = [], 0
            for op_index, count in enumerate(counts):
                chunk = v[start : start + count]
                if count and op_index < len(ops):
                    chunk = ops[op_index](
                        chunk,
                        p.factors[current[start : start + count], op_index],
                    )
                chunks.append(chunk)
                start += count
            v = torch.cat(chunks)
        return v[current.argsort()]

    def __call__(
        self, x: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        """One random view of every image in ``x``."""
        return self.apply(
            x,
            self.sample(
                x.shape[0], x.shape[-2], x.shape[-1], x.device, generator
            ),
        )


def torchvision_pipeline(aug: ViewAugment):
    """The same augmentation as a ``torchvision.transforms.v2`` pipeline, applied one image at a time."""
    from torchvision.transforms import v2

    steps = [
        v2.RandomResizedCrop(
            aug.size, scale=aug.scale, ratio=aug.ratio, antialias=True
        ),
        v2.RandomHorizontalFlip(aug.flip_p),
        v2.RandomApply(
            [
                v2.ColorJitter(
                    aug.brightness, aug.contrast, aug.saturation, aug.hue
                )
            ],
            p=aug.jitter_p,
        ),
        v2.RandomGrayscale(aug.gray_p),
    ]
    if aug.solarize_p > 0:
        steps.append(v2.RandomSolarize(0.5, p=aug.solarize_p))
    return v2.Compose(steps)


def apply_with_torchvision(x: Tensor, p: ViewParams, size: int) -> Tensor:
    """Apply parameters ``p`` image by image with ``torchvision.transforms.v2.functional`` (the reference)."""
    from torchvision.transforms.v2 import functional as TF

    ops = (
        TF.adjust_brightness,
        TF.adjust_contrast,
        TF.adjust_saturation,
        TF.adjust_hue,
    )
    out = []
    for i in range(x.shape[0]):
        q = p.select(i)
        img = TF.resized_crop(
            x[i],
            q["top"],
            q["left"],
            q["height"],
            q["width"],
            [size, size],
            antialias=True,
        )
        if q["flip"]:
            img = TF.horizontal_flip(img)
        if q["jitter"]:
            for op_index in q["order"]:
                img = ops[op_index](img, q["factors"][op_index])
        if q["gray"]:
            img = TF.rgb_to_grayscale(img, num_output_channels=3)
        if q["solarize"]:
            img = TF.solarize(img, 0.5)
        out.append(img)
    return torch.stack(out)


@dataclass
class MultiCrop:
    """DINO's multi-crop (Caron et al., 2021; from SwAV): ``n_global`` large crops and ``n_local`` small, low-resolution ones.

    Global crops cover ``global_scale`` of the image (the paper: 40-100% at 224 px); local crops
    ``local_scale`` (5-40% at 96 px). Here 32 px and 16 px.
    """

    global_view: ViewAugment
    local_view: ViewAugment
    n_global: int = 2
    n_local: int = 4

    def __post_init__(self) -> None:
        if self.n_global < 1 or self.n_local < 0:
            raise ValueError(
                f"need n_global >= 1 and n_local >= 0; got {self.n_global}, {self.n_local}"
            )

    def __call__(
        self, x: Tensor, generator: torch.Generator | None = None
    ) -> list[Tensor]:
        """Global views first, then local views."""
        return [
            self.global_view(x, generator) for _ in range(self.n_global)
        ] + [self.local_view(x, generator) for _ in range(self.n_local)]
