"""The toy world, the digits, and the honest offline behaviour of real data sets."""

import pytest
import torch

from vnotes.data import (
    COLOURS,
    SHAPES,
    DatasetUnavailableError,
    Vocabulary,
    WorldConfig,
    load_digits,
    load_real,
    make_clips,
    make_scenes,
)
from vnotes.data.toyworld import Scenes


def test_scenes_are_deterministic_and_splits_differ():
    a = make_scenes(64, seed=3, max_objects=2)
    b = make_scenes(64, seed=3, max_objects=2)
    c = make_scenes(64, seed=3, max_objects=2, split="test")
    assert torch.equal(a.images, b.images) and a.captions == b.captions
    assert not torch.equal(a.images, c.images)
    assert (
        a.images.shape == (64, 3, 32, 32)
        and a.images.min() >= 0
        and a.images.max() <= 1
    )


def test_scene_labels_boxes_and_captions_agree():
    s = make_scenes(200, seed=0, min_objects=2, max_objects=2)
    assert (s.n_objects == 2).all()
    for i in range(20):
        words = s.captions[i].split()
        assert (
            list(COLOURS)[s.colour[i, 0]] in words
            and SHAPES[s.shape[i, 0]] in words
        )
        x0, y0, x1, y1 = s.boxes[i, 0].tolist()
        cx, cy = s.centers[i, 0].tolist()
        assert x0 < cx < x1 and y0 < cy < y1, (
            "the object's centre lies in its box"
        )
    # objects are drawn where their boxes say: the box region holds the object's colour
    i = 0
    x0, y0, x1, y1 = s.boxes[i, 0].long().tolist()
    patch = s.images[i, :, y0:y1, x0:x1].reshape(3, -1)
    target = torch.tensor(COLOURS[list(COLOURS)[s.colour[i, 0]]])
    assert ((patch.T - target).norm(dim=1) < 0.2).float().mean() > 0.3


def test_held_out_combinations_never_appear():
    cfg = WorldConfig(exclude_combos=(("red", "triangle"),))
    s = make_scenes(3000, seed=1, config=cfg)
    red, tri = list(COLOURS).index("red"), SHAPES.index("triangle")
    assert not ((s.colour[:, 0] == red) & (s.shape[:, 0] == tri)).any()
    only = make_scenes(50, seed=1, only_combos=(("red", "triangle"),))
    assert ((only.colour[:, 0] == red) & (only.shape[:, 0] == tri)).all()


def test_bad_world_arguments_are_named():
    with pytest.raises(ValueError, match="shape 'hexagon'"):
        WorldConfig(shapes=("hexagon",))
    with pytest.raises(ValueError, match="split='dev'"):
        make_scenes(4, split="dev")
    with pytest.raises(ValueError, match="n=0"):
        make_scenes(0)


def test_clips_move_in_their_direction():
    c = make_clips(32, frames=6, seed=0)
    assert c.videos.shape == (32, 6, 3, 32, 32)
    for i in range(8):
        v = c.videos[i]
        bright = (
            v.max(1).values - v.min(1).values
        )  # objects are saturated, background grey

        def centroid(frame):
            m = (frame > 0.3).float()
            ys, xs = torch.meshgrid(
                torch.arange(32.0), torch.arange(32.0), indexing="ij"
            )
            return torch.stack(
                [(xs * m).sum() / m.sum(), (ys * m).sum() / m.sum()]
            )

        d = centroid(bright[-1]) - centroid(bright[0])
        expected = torch.tensor(
            [[1, 0], [-1, 0], [0, 1], [0, -1]][c.direction[i]],
            dtype=torch.float,
        )
        assert (d * expected).sum() > 2, (
            "the object moved the way its label says"
        )


def test_vocabulary_round_trip():
    v = Vocabulary()
    text = "a small red circle left of a large blue square"
    ids = v.encode(text, length=16, bos=True, eos=True)
    assert len(ids) == 16 and ids[0] == v.bos and v.pad == 0
    assert v.decode(ids) == text
    assert v.encode("a purple hexagon")[-1] == v.unk


def test_digits_splits_are_disjoint_and_stratified():
    tr, va, te = (load_digits(s) for s in ("train", "val", "test"))
    assert len(tr) + len(va) + len(te) == 1797
    assert set(tr.labels.tolist()) == set(range(10))
    assert load_digits("test", size=16).images.shape[-1] == 16
    with pytest.raises(ValueError, match="split='all'"):
        load_digits("all")


def test_real_data_offline_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetUnavailableError, match="download=True"):
        load_real("mnist", root=tmp_path)
    assert list(tmp_path.iterdir()) == [], (
        "nothing that looks like data is left behind"
    )
    with pytest.raises(ValueError, match="dataset='imagenet'"):
        load_real("imagenet", root=tmp_path)


def test_object_masks_follow_subsets():
    s = make_scenes(40, seed=5, max_objects=3)
    masks = s.object_masks()
    assert masks.shape == (40, s.images.shape[2], s.images.shape[3])
    idx = [3, 17, 0, 39]
    sub = s.subset(idx)
    assert torch.equal(sub.object_masks(), masks[idx])
    assert torch.equal(s.subset(slice(5, 9)).object_masks(), masks[5:9])
    assert masks.any(dim=(1, 2)).all(), (
        "every scene has at least one object pixel"
    )
    # every mask pixel lies inside one of its scene's boxes (x0, y0, x1, y1)
    ys, xs = torch.meshgrid(
        torch.arange(masks.shape[1]),
        torch.arange(masks.shape[2]),
        indexing="ij",
    )
    for i in range(len(s)):
        inside = torch.zeros_like(masks[i])
        for k in range(int(s.n_objects[i])):
            x0, y0, x1, y1 = s.boxes[i, k].tolist()
            inside |= (
                (xs + 0.5 >= x0 - 1)
                & (xs + 0.5 <= x1 + 1)
                & (ys + 0.5 >= y0 - 1)
                & (ys + 0.5 <= y1 + 1)
            )
        assert not (masks[i] & ~inside).any()


def test_object_masks_errors_are_clear():
    s = make_scenes(4, seed=0)
    with pytest.raises(ValueError, match="threshold"):
        s.object_masks(threshold=1.5)
    bare = Scenes(
        s.images,
        s.shape,
        s.colour,
        s.size,
        s.boxes,
        s.centers,
        s.n_objects,
        s.captions,
        s.config,
    )
    with pytest.raises(ValueError, match="no coverage"):
        bare.object_masks()
