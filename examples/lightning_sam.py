"""A LightningModule trained with SAM, SL-SAM or RST under Lightning's automatic optimization.

python examples/lightning_sam.py --optimizer slsam --precision 16-mixed --accumulate 2 --clip 1.0

Needs ``pip install "slsam_kernels[lightning]"``. On a CPU, Lightning runs ``16-mixed`` as
bf16; this script then passes Lightning's float16 plugin itself, so the GradScaler path runs
there too (on a GPU ``precision="16-mixed"`` is that plugin).
"""

from __future__ import annotations

import argparse

import torch

try:
    import lightning.pytorch as pl
except ImportError:
    import pytorch_lightning as pl

from slsam_kernels import RST, SAM, SLSAM
from slsam_kernels.integrations.lightning import SharpnessAwareMixin

OPTIMIZERS = {"sam": SAM, "slsam": SLSAM, "rst": RST}


class Classifier(SharpnessAwareMixin, pl.LightningModule):
    """An MLP with BatchNorm; its optimizer is SAM, SL-SAM or RST around AdamW."""

    def __init__(self, optimizer: str, lr: float, steps: int) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(20, 64),
            torch.nn.BatchNorm1d(64),
            torch.nn.ReLU(),
            torch.nn.Linear(64, 4),
        )
        self.optimizer, self.lr, self.steps = optimizer, lr, steps

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int):
        x, y = batch
        loss = torch.nn.functional.cross_entropy(self.net(x).float(), y)
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self):
        opt = OPTIMIZERS[self.optimizer](self.parameters(), torch.optim.AdamW, lr=self.lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=self.steps)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def data(rows: int = 512) -> torch.utils.data.DataLoader:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(rows, 20, generator=gen)
    y = (x[:, :4] + 0.3 * torch.randn(rows, 4, generator=gen)).argmax(dim=1)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32)


def precision_options(precision: str, accelerator: str) -> dict:
    if precision == "16-mixed" and accelerator == "cpu":
        return {"plugins": [pl.plugins.precision.MixedPrecision("16-mixed", "cpu")]}
    return {"precision": precision}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default="sam")
    parser.add_argument("--precision", choices=["32-true", "bf16-mixed", "16-mixed"])
    parser.add_argument("--accumulate", type=int, default=1)
    parser.add_argument("--clip", type=float, default=None, help="clips the descent only")
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()

    torch.manual_seed(0)
    loader = data()
    steps = args.epochs * -(-len(loader) // args.accumulate)
    accelerator = "gpu" if torch.cuda.is_available() else "cpu"
    trainer = pl.Trainer(
        accelerator=accelerator,
        devices=1,
        max_epochs=args.epochs,
        accumulate_grad_batches=args.accumulate,
        gradient_clip_val=args.clip,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        **precision_options(args.precision or "32-true", accelerator),
    )
    model = Classifier(args.optimizer, lr=1e-2, steps=steps)
    trainer.fit(model, loader)
    print(f"final train_loss {float(trainer.callback_metrics['train_loss']):.4f}")


if __name__ == "__main__":
    main()
