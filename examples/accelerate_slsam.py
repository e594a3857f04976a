"""SL-SAM in a Hugging Face accelerate "no trainer" loop (the loop of transformers'
run_glue_no_trainer.py, which the SL-SAM authors' RoBERTa GLUE script follows).

python examples/accelerate_slsam.py [--optimizer slsam|sam|rst] [--mixed-precision bf16|fp16]
accelerate launch --cpu --num_processes 2 examples/accelerate_slsam.py   # two gloo ranks

Needs ``pip install "slsam_kernels[hf]"`` (accelerate). The task is synthetic, so it runs in
seconds on a CPU with nothing downloaded: a sequence of random tokens is positive when it
holds more "positive" tokens (the first half of the vocabulary) than negative ones; the model
is a bag of embeddings, a LayerNorm and a classifier.
"""

from __future__ import annotations

import argparse
import math

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, set_seed

from slsam_kernels import RST, SAM, SLSAM
from slsam_kernels.integrations.accelerate import SAMWindow

VOCAB, LENGTH = 64, 12
OPTIMIZERS = {"slsam": SLSAM, "sam": SAM, "rst": RST}


class BagOfTokens(torch.nn.Module):
    def __init__(self, hidden: int = 32) -> None:
        super().__init__()
        self.embeddings = torch.nn.EmbeddingBag(VOCAB, hidden)
        self.norm = torch.nn.LayerNorm(hidden)
        self.classifier = torch.nn.Linear(hidden, 2)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.norm(self.embeddings(input_ids)))


def synthetic_dataset(rows: int, seed: int) -> torch.utils.data.TensorDataset:
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(0, VOCAB, (rows, LENGTH), generator=generator)
    labels = ((input_ids < VOCAB // 2).sum(1) > LENGTH // 2).long()
    return torch.utils.data.TensorDataset(input_ids, labels)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default="slsam")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--per-device-batch-size", type=int, default=16)
    parser.add_argument("--gradient-accumulation-steps", type=int, default=2)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--warmup-steps", type=int, default=5)
    parser.add_argument("--rho", type=float, default=0.05)
    parser.add_argument("--sample-ratio", type=float, default=0.5, help="SL-SAM's")
    parser.add_argument("--max-grad-norm", type=float, default=1.0, help="clips the descent")
    parser.add_argument(
        "--mixed-precision",
        choices=["no", "bf16", "fp16"],
        default="no",
        help="fp16: with accelerate's GradScaler on a GPU (on a CPU accelerate trains it in fp32)",
    )
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def train(accelerator: Accelerator, args: argparse.Namespace) -> float:
    """Train, evaluating after each epoch; the last evaluation accuracy."""
    set_seed(args.seed)  # the same initial weights on every rank
    train_data, eval_data = synthetic_dataset(2048, seed=1), synthetic_dataset(512, seed=2)
    train_dataloader = torch.utils.data.DataLoader(
        train_data, batch_size=args.per_device_batch_size, shuffle=True
    )
    eval_dataloader = torch.utils.data.DataLoader(eval_data, batch_size=64)

    # Prepare the model before building SL-SAM: DistributedDataParallel registers only the
    # tensors that require grad when it is built, and SL-SAM freezes the inactive ones.
    model = accelerator.prepare(BagOfTokens())
    no_decay = ("bias", "norm.weight")
    groups = [
        {
            "params": [p for n, p in model.named_parameters() if not n.endswith(no_decay)],
            "weight_decay": args.weight_decay,
        },
        {
            "params": [p for n, p in model.named_parameters() if n.endswith(no_decay)],
            "weight_decay": 0.0,
        },
    ]
    own_kwargs = {
        "slsam": {"sample_ratio": args.sample_ratio, "seed": args.seed},
        "rst": {"seed": args.seed},
        "sam": {},
    }[args.optimizer]
    optimizer = OPTIMIZERS[args.optimizer](
        groups,
        torch.optim.AdamW,
        rho=args.rho,
        max_grad_norm=args.max_grad_norm,  # not accelerator.clip_grad_norm_: see SAMWindow
        lr=args.learning_rate,
        **own_kwargs,
    )
    steps_per_epoch = math.ceil(len(train_dataloader) / args.gradient_accumulation_steps)
    total_steps = args.epochs * steps_per_epoch
    lr_scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: (
            min(1.0, (step + 1) / args.warmup_steps) * max(0.0, (total_steps - step) / total_steps)
        ),
    )
    optimizer, train_dataloader, eval_dataloader, lr_scheduler = accelerator.prepare(
        optimizer, train_dataloader, eval_dataloader, lr_scheduler
    )

    loss_fn = torch.nn.CrossEntropyLoss()
    window = SAMWindow(accelerator, model, lambda batch: loss_fn(model(batch[0]), batch[1]))
    for epoch in range(args.epochs):
        model.train()
        total_loss = torch.zeros(())
        for batch in train_dataloader:
            with accelerator.accumulate(model):
                total_loss += window.backward(batch).float().cpu()  # the first pass
                optimizer.step(window.replay)  # on the window's last micro-batch only
                lr_scheduler.step()
                optimizer.zero_grad()

        model.eval()
        correct = seen = 0
        for input_ids, labels in eval_dataloader:
            with torch.no_grad():
                predictions = model(input_ids).argmax(-1)
            predictions, labels = accelerator.gather_for_metrics((predictions, labels))
            correct += int((predictions == labels).sum())
            seen += labels.numel()
        mean_loss = total_loss.item() / len(train_dataloader)
        accelerator.print(
            f"epoch {epoch}: train_loss {mean_loss:.4f} eval_accuracy {correct / seen:.4f}"
        )
    return correct / seen


def main() -> None:
    args = parse_args()
    accelerator = Accelerator(
        cpu=not torch.cuda.is_available(),
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        # SL-SAM's inactive tensors get no gradient in a step.
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
    )
    accuracy = train(accelerator, args)
    accelerator.print(f"final eval_accuracy {accuracy:.4f}")
    # Drop the DDP model before the process group goes.
    accelerator.free_memory()
    accelerator.end_training()


if __name__ == "__main__":
    main()
