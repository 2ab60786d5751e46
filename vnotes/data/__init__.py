"""Data for every chapter, offline first: the toy world, scikit-learn's digits, and (online) torchvision sets."""
from .digits import Digits, load_digits
from .loader import TensorLoader
from .real import DatasetUnavailableError, load_real
from .toyworld import (COLOURS, DIRECTIONS, SHAPES, SIZES, Clips, Scenes, Vocabulary, WorldConfig,
                       make_clips, make_scenes)

__all__ = ["COLOURS", "DIRECTIONS", "SHAPES", "SIZES", "Clips", "DatasetUnavailableError", "Digits", "Scenes",
           "TensorLoader", "Vocabulary", "WorldConfig", "load_digits", "load_real", "make_clips", "make_scenes"]
