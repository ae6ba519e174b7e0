"""mogsim.data: CIFAR-10 in any common on-disk format, and seeded nested training subsets.

``load_cifar10(path, split)`` gives uint8 ``(N, 3, 32, 32)`` images and int64 labels; ``images_to_tensor`` maps
them to ``[-1, 1]``; ``subset_indices`` draws nested (and optionally class-balanced) subsets from a seed, and
``save_subset`` / ``load_subset`` record the one a run used.
"""

from .cifar import CIFAR10_CLASSES, SPLITS, images_to_tensor, load_cifar10
from .subsets import load_subset, save_subset, subset_indices

__all__ = [
    "CIFAR10_CLASSES",
    "SPLITS",
    "images_to_tensor",
    "load_cifar10",
    "load_subset",
    "save_subset",
    "subset_indices",
]
