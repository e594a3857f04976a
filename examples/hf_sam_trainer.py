"""A Hugging Face Trainer script switched to SL-SAM: SAMTrainer in place of Trainer.

python examples/hf_sam_trainer.py --steps 20 [--fp16]

Needs ``pip install "slsam_kernels[hf]"``. The model is a small, randomly initialised BERT and
the data random tokens (nothing is downloaded). ``--fp16`` uses accelerate's GradScaler, on a
GPU (on the CPU accelerate trains fp16 in fp32, with no scaler).
"""

from __future__ import annotations

import argparse
import tempfile

import torch
import transformers

from slsam_kernels import SLSAM
from slsam_kernels.integrations.hf import SAMTrainer


def random_dataset(rows: int) -> list[dict]:
    gen = torch.Generator().manual_seed(0)
    return [
        {
            "input_ids": torch.randint(0, 100, (16,), generator=gen),
            "attention_mask": torch.ones(16, dtype=torch.long),
            "labels": int(torch.randint(0, 2, (), generator=gen)),
        }
        for _ in range(rows)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--fp16", action="store_true")
    args = parser.parse_args()

    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=37,
    )  # fmt: skip
    model = transformers.BertForSequenceClassification(config)
    with tempfile.TemporaryDirectory() as out:
        training_args = transformers.TrainingArguments(
            output_dir=out,
            max_steps=args.steps,
            per_device_train_batch_size=8,
            gradient_accumulation_steps=2,
            learning_rate=1e-3,
            max_grad_norm=1.0,  # clips the descent only
            fp16=args.fp16,
            report_to=[],
            save_strategy="no",
            logging_steps=max(1, args.steps // 4),
            disable_tqdm=True,
        )
        trainer = SAMTrainer(
            model=model,
            args=training_args,
            train_dataset=random_dataset(16 * args.steps),
            sam_optimizer=SLSAM,
            sam_kwargs={"sample_ratio": 0.5, "seed": 0},
        )
        result = trainer.train()
    print(f"final training_loss {result.training_loss:.4f}")


if __name__ == "__main__":
    main()
