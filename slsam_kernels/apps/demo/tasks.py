"""The demo's tasks: which data, which pretrained model, and the defaults that suit them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from . import data, models

IMAGE_SIZE = 32
TEXT_MAX_TOKENS = 128


@dataclass(frozen=True)
class Defaults:
    """Per-task defaults for the options the user leaves out."""

    steps: int
    batch_size: int
    base: str
    lr: float
    weight_decay: float
    rho: float
    train_size: int
    test_size: int


@dataclass(frozen=True)
class Prepared:
    """A task ready to run: its data (noisy training labels) and a fresh-model builder."""

    data: data.LabelledData
    build_model: Callable[[], nn.Module]


@dataclass(frozen=True)
class Task:
    """A named task: a one-line description, its defaults and how to prepare it."""

    description: str
    defaults: Defaults
    #: ``prepare(train_size, test_size, noise, seed, **options)``; options: ``max_tokens``
    #: for the text task.
    prepare: Callable[..., Prepared]


def _with_noise(clean: data.LabelledData, noise: float, seed: int) -> data.LabelledData:
    """``clean`` with symmetric noise on the training labels only (the test set stays clean)."""
    labels = data.add_symmetric_noise(clean.train.labels, clean.num_classes, noise, seed)
    return data.LabelledData(
        train=data.Split(clean.train.inputs, labels), test=clean.test, num_classes=clean.num_classes
    )


def prepare_image(train_size: int, test_size: int, noise: float, seed: int) -> Prepared:
    """EfficientNet-Lite0 (ImageNet weights) on Fashion-MNIST at 32x32."""
    build_model = partial(models.efficientnet_lite0, num_classes=10, image_size=IMAGE_SIZE)
    clean = data.fashion_mnist(train_size, test_size, seed, image_size=IMAGE_SIZE)
    return Prepared(_with_noise(clean, noise, seed), build_model)


def prepare_text(
    train_size: int,
    test_size: int,
    noise: float,
    seed: int,
    max_tokens: int = TEXT_MAX_TOKENS,
    classifier: Callable[[int], nn.Module] = models.minilm_classifier,
) -> Prepared:
    """all-MiniLM-L6-v2 with a linear head on BBC News (first ``max_tokens`` tokens of each
    article); ``classifier(num_classes)`` builds the model."""
    corpus = data.bbc_news()
    train_idx, test_idx = data.split_indices(len(corpus.labels), train_size, test_size, seed)

    def tokens(idx: torch.Tensor) -> torch.Tensor:
        return models.minilm_tokenize([corpus.texts[i] for i in idx.tolist()], max_tokens)

    clean = data.LabelledData(
        train=data.Split(tokens(train_idx), corpus.labels[train_idx]),
        test=data.Split(tokens(test_idx), corpus.labels[test_idx]),
        num_classes=len(corpus.classes),
    )
    build_model = partial(classifier, num_classes=clean.num_classes)
    return Prepared(_with_noise(clean, noise, seed), build_model)


TASKS: dict[str, Task] = {
    "image": Task(
        description="EfficientNet-Lite0 (ImageNet) fine-tuned on Fashion-MNIST, 32x32",
        defaults=Defaults(
            steps=150,
            batch_size=32,
            base="sgd",
            lr=0.01,
            weight_decay=5e-4,
            rho=0.05,
            train_size=2000,
            test_size=2000,
        ),
        prepare=prepare_image,
    ),
    "text": Task(
        description="all-MiniLM-L6-v2 fine-tuned on BBC News (5 classes)",
        defaults=Defaults(
            steps=150,
            batch_size=16,
            base="adamw",
            lr=5e-5,
            weight_decay=0.01,
            rho=0.05,
            train_size=1500,
            test_size=725,
        ),
        prepare=prepare_text,
    ),
    "lora": Task(
        description="all-MiniLM-L6-v2 with LoRA adapters (r 8, alpha 16) on BBC News (5 classes)",
        defaults=Defaults(
            steps=150,
            batch_size=16,
            base="adamw",
            lr=1e-3,
            weight_decay=0.0,
            rho=0.05,
            train_size=1500,
            test_size=725,
        ),
        prepare=partial(prepare_text, classifier=models.minilm_lora_classifier),
    ),
}
