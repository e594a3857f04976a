"""Parameter-tensor shapes of real models (computed from their configs, no weights), a synthetic
grid and adversarial lists. Each builder returns ``[(name, shape), ...]`` in parameter order."""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch

Shapes = list[tuple[str, tuple[int, ...]]]


def _from_config(make_model: Callable[[], torch.nn.Module]) -> Shapes:
    """Instantiate on the meta device (no memory, no weights) and read the parameter shapes."""
    with torch.device("meta"):
        model = make_model()
    return [(name, tuple(p.shape)) for name, p in model.named_parameters()]


def _transformers():
    try:
        import transformers
    except ImportError as exc:
        raise RuntimeError(
            "the model tensor lists are built from transformers configs: "
            "pip install 'slsam_kernels[bench]'"
        ) from exc
    return transformers


def resnet50() -> Shapes:
    """ResNet-50 (bottleneck depths 3-4-6-3, 1000 classes): 25.6M elements, 161 tensors."""
    t = _transformers()
    return _from_config(lambda: t.ResNetForImageClassification(t.ResNetConfig(num_labels=1000)))


def vit_b16() -> Shapes:
    """ViT-B/16 at 224 px, 1000 classes: 86.6M elements, 200 tensors."""
    t = _transformers()
    return _from_config(lambda: t.ViTForImageClassification(t.ViTConfig(num_labels=1000)))


def roberta_base() -> Shapes:
    """RoBERTa-base (vocab 50265, 514 positions, pooler): 124.6M elements, 199 tensors."""
    t = _transformers()
    config = t.RobertaConfig(vocab_size=50265, max_position_embeddings=514, type_vocab_size=1)
    return _from_config(lambda: t.RobertaModel(config))


def gpt2_124m() -> Shapes:
    """GPT-2 small (LM head tied to the embedding): 124.4M elements, 148 tensors."""
    t = _transformers()
    return _from_config(lambda: t.GPT2LMHeadModel(t.GPT2Config()))


def _llama(hidden: int, intermediate: int, layers: int, heads: int) -> Shapes:
    t = _transformers()
    config = t.LlamaConfig(
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
    )
    return _from_config(lambda: t.LlamaForCausalLM(config))


def llama_1b3() -> Shapes:
    """A ~1.3B Llama-style config (2048 hidden, 5504 MLP, 24 layers): 1.35B elements."""
    return _llama(2048, 5504, 24, 16)


def llama_7b() -> Shapes:
    """Llama-7B's config (4096 hidden, 11008 MLP, 32 layers): 6.74B elements."""
    return _llama(4096, 11008, 32, 32)


def grid(count: int, numel: int) -> Shapes:
    """``count`` tensors of ``numel`` elements each (the synthetic grid's cell)."""
    return [(f"t{i}", (numel,)) for i in range(count)]


def huge_and_tiny(huge: int = 16 * 2**20, tiny: int = 1000) -> Shapes:
    """Adversarial: one huge tensor and ``tiny`` tensors of 1 to 63 elements."""
    gen = torch.Generator().manual_seed(0)
    sizes = torch.randint(1, 64, (tiny,), generator=gen).tolist()
    return [("huge", (huge,)), *((f"tiny{i}", (n,)) for i, n in enumerate(sizes))]


def odd_sizes(count: int = 500, largest: int = 100_003) -> Shapes:
    """Adversarial: ``count`` tensors whose sizes are never a multiple of 16 (odd primes'
    neighbourhood), so vector loops always have a tail."""
    gen = torch.Generator().manual_seed(1)
    sizes = torch.randint(17, largest, (count,), generator=gen)
    sizes = sizes + (sizes % 16 == 0).long()
    return [(f"odd{i}", (int(n),)) for i, n in enumerate(sizes)]


def lora(hidden: int, ffn: int, layers: int, rank: int) -> Shapes:
    """LoRA adapters at ``rank`` on every linear layer of a BERT-style encoder's blocks
    (query, key, value, attention output, FFN in and out): ``(lora_B, lora_A)`` pairs,
    consecutive in the list."""
    linears = [(f"attention.self.{m}", hidden, hidden) for m in ("query", "key", "value")]
    linears += [("attention.output.dense", hidden, hidden), ("intermediate.dense", hidden, ffn)]
    linears += [("output.dense", ffn, hidden)]
    shapes: Shapes = []
    for layer in range(layers):
        for name, d_in, d_out in linears:
            prefix = f"encoder.layer.{layer}.{name}"
            shapes += [(f"{prefix}.lora_B", (d_out, rank)), (f"{prefix}.lora_A", (rank, d_in))]
    return shapes


def roberta_base_lora() -> Shapes:
    """RoBERTa-base's LoRA adapters at rank 8 on every block linear: 1.33M elements, 144
    tensors in 72 pairs."""
    return lora(768, 3072, 12, 8)


# name -> builder; the large ones run on a GPU only (see run.py's presets).
MODELS: dict[str, Callable[[], Shapes]] = {
    "resnet50": resnet50,
    "vit_b16": vit_b16,
    "roberta_base": roberta_base,
    "roberta_base_lora": roberta_base_lora,
    "gpt2_124m": gpt2_124m,
    "llama_1b3": llama_1b3,
    "llama_7b": llama_7b,
}


@functools.cache
def model_shapes(name: str) -> Shapes:
    """The shapes of a named list: a model, ``grid:COUNTxNUMEL``, ``huge_and_tiny``,
    ``odd_sizes`` or ``lora:HIDDENxFFNxLAYERSxRANK`` (LoRA pairs)."""
    if name in MODELS:
        return MODELS[name]()
    if name.startswith("grid:"):
        count, numel = name.removeprefix("grid:").split("x")
        return grid(int(count), int(numel))
    if name == "huge_and_tiny":
        return huge_and_tiny()
    if name == "odd_sizes":
        return odd_sizes()
    if name.startswith("lora:"):
        hidden, ffn, layers, rank = name.removeprefix("lora:").split("x")
        return lora(int(hidden), int(ffn), int(layers), int(rank))
    if name.startswith("odd_sizes:"):
        count, largest = name.removeprefix("odd_sizes:").split("x")
        return odd_sizes(int(count), int(largest))
    raise ValueError(
        f"unknown tensor list {name!r}: use one of {', '.join(MODELS)}, grid:COUNTxNUMEL, "
        "huge_and_tiny, odd_sizes, odd_sizes:COUNTxLARGEST, lora:HIDDENxFFNxLAYERSxRANK"
    )
