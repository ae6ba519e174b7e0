"""mogsim.data: CIFAR-10 in any common on-disk format, and seeded nested training subsets.

``load_cifar10(path, split)`` gives uint8 ``(N, 3, 32, 32)`` images and int64 labels; ``images_to_tensor`` maps
them to ``[-1, 1]``; ``subset_indices`` draws nested (and optionally class-balanced) subsets from a seed, and
``save_subset`` / ``load_subset`` record the one a run used; ``load_training_set`` is the loader every command
uses (an array file or CIFAR-10, a subset, checks for shape, dtype and NaN/inf).
"""

from .cifar import CIFAR10_CLASSES, SPLITS, images_to_tensor, load_cifar10, write_edm_zip
from .subsets import load_subset, save_subset, subset_indices
from .training_set import TrainingSet, load_training_set

__all__ = [
    "CIFAR10_CLASSES",
    "SPLITS",
    "TrainingSet",
    "images_to_tensor",
    "load_cifar10",
    "write_edm_zip",
    "load_subset",
    "load_training_set",
    "save_subset",
    "subset_indices",
]
