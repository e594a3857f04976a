"""SAMTrainer: a Hugging Face Trainer running SAM / SL-SAM / RST with its own loss,
accumulation and clipping, on a tiny randomly initialised BERT (no download)."""

import pytest
import torch

transformers = pytest.importorskip(
    "transformers", reason="needs transformers: pip install transformers accelerate"
)
pytest.importorskip("accelerate", reason="needs accelerate: pip install accelerate")

from slsam_kernels import RST, SAM, SLSAM  # noqa: E402
from slsam_kernels.integrations.hf import SAMTrainer  # noqa: E402

STEPS, ACCUMULATION, BATCH = 3, 2, 4


def tiny_bert():
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
    )
    return transformers.BertForSequenceClassification(config)


def random_dataset(count=STEPS * ACCUMULATION * BATCH):
    gen = torch.Generator().manual_seed(0)
    return [
        {
            "input_ids": torch.randint(0, 100, (12,), generator=gen),
            "attention_mask": torch.ones(12, dtype=torch.long),
            "labels": int(torch.randint(0, 2, (), generator=gen)),
        }
        for _ in range(count)
    ]


def make_trainer(tmp_path, model, sam_optimizer, sam_kwargs, **args):
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path),
        max_steps=STEPS,
        per_device_train_batch_size=BATCH,
        gradient_accumulation_steps=ACCUMULATION,
        learning_rate=1e-3,
        report_to=[],
        save_strategy="no",
        logging_steps=1,
        use_cpu=True,
        **args,
    )
    return SAMTrainer(
        model=model,
        args=args,
        train_dataset=random_dataset(),
        sam_optimizer=sam_optimizer,
        sam_kwargs=sam_kwargs,
    )


def count_forwards(model):
    calls = []
    model.register_forward_hook(lambda *_: calls.append(1))
    return calls


@pytest.mark.parametrize(
    "sam_optimizer, sam_kwargs, passes",
    [
        pytest.param(SAM, {}, 2 * STEPS, id="SAM"),
        pytest.param(SLSAM, {"sample_ratio": 0.5, "seed": 0}, 2 * STEPS, id="SLSAM"),
        pytest.param(RST, {"sam_prob": 0.0, "seed": 0}, STEPS, id="RST-never-SAM"),
    ],
)
def test_every_optimizer_step_takes_both_passes_over_the_window(
    tmp_path, sam_optimizer, sam_kwargs, passes
):
    model = tiny_bert()
    before = [p.detach().clone() for p in model.parameters()]
    forwards = count_forwards(model)
    trainer = make_trainer(tmp_path, model, sam_optimizer, sam_kwargs)
    result = trainer.train()
    assert len(forwards) == passes * ACCUMULATION
    assert torch.isfinite(torch.tensor(result.training_loss))
    assert isinstance(trainer.optimizer.optimizer, sam_optimizer)
    assert trainer.optimizer.optimizer.max_grad_norm == 1.0  # the TrainingArguments default
    assert not trainer._window
    changed = [not torch.equal(a, b) for a, b in zip(before, model.parameters())]
    assert any(changed)
    if sam_optimizer is SLSAM:
        opt = trainer.optimizer.optimizer
        assert not all(changed)  # inactive arms stayed put
        assert not torch.equal(opt.probs, torch.full((opt.num_arms,), 0.5))


def test_descent_is_clipped_and_the_first_pass_is_not(tmp_path, monkeypatch):
    seen = {}
    trainer = make_trainer(tmp_path, tiny_bert(), SAM, {}, max_grad_norm=1e-3)
    original = SAM.second_step

    def spy_second_step(opt, *args, **kwargs):
        grads = [p.grad for g in opt.param_groups for p in g["params"] if p.grad is not None]
        seen.setdefault("first", float(opt._perturbation.grad_sqnorms.sum().sqrt()))
        original(opt, *args, **kwargs)
        seen.setdefault("descent", float(torch.stack([g.norm() for g in grads]).norm()))

    monkeypatch.setattr(SAM, "second_step", spy_second_step)
    trainer.train()
    assert seen["first"] > 1e-2  # unclipped
    assert seen["descent"] == pytest.approx(1e-3, rel=1e-3)


def test_bad_optimizer_arguments_are_rejected(tmp_path):
    with pytest.raises(TypeError, match="sam_optimizer must be SAM, SLSAM or RST"):
        make_trainer(tmp_path, tiny_bert(), torch.optim.AdamW, {})


@pytest.mark.parametrize("max_grad_norm", [1e-3, 0.0], ids=["clipped", "unclipped"])
def test_fp16_unscales_both_passes_with_accelerates_scaler(tmp_path, monkeypatch, max_grad_norm):
    """fp16=True: accelerate's GradScaler goes through the optimizer's own scaler path."""
    seen = []
    original = SAM.second_step

    def spy_second_step(opt, *args, **kwargs):
        scaler = kwargs["scaler"]
        grads = [p.grad for g in opt.param_groups for p in g["params"] if p.grad is not None]
        first = float(opt._perturbation.grad_sqnorms.sum().sqrt())
        original(opt, *args, **kwargs)
        descent = float(torch.stack([g.norm() for g in grads]).norm())
        seen.append((scaler, first, descent, opt.last_step_skipped))

    monkeypatch.setattr(SAM, "second_step", spy_second_step)
    model = tiny_bert()
    before = [p.detach().clone() for p in model.parameters()]
    forwards = count_forwards(model)
    trainer = make_trainer(tmp_path, model, SAM, {}, fp16=True, max_grad_norm=max_grad_norm)
    # accelerate builds no GradScaler on the CPU (fp16 there trains in fp32): give it torch's
    # CPU one, as it builds a CUDA one on a GPU, so its scaler path runs as there: the scaled
    # backward, scaler.step(optimizer, closure), scaler.update().
    assert trainer.accelerator.scaler is None
    scaler = trainer.accelerator.scaler = torch.amp.GradScaler("cpu")
    result = trainer.train()
    assert trainer.optimizer.scaler is scaler  # accelerate's optimizer wrapper took it
    assert len(forwards) == 2 * STEPS * ACCUMULATION
    assert len(seen) == STEPS and all(s is scaler for s, *_ in seen)
    # Unscaled: a first pass still multiplied by the scale (65536) would be far above 1e2.
    assert all(1e-2 < first < 1e2 and not skipped for _, first, _, skipped in seen)
    if max_grad_norm:
        assert all(descent == pytest.approx(1e-3, rel=1e-3) for *_, descent, _ in seen)
    else:
        assert all(1e-2 < descent < 1e2 for *_, descent, _ in seen)
    assert torch.isfinite(torch.tensor(result.training_loss))
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    logged = [log["grad_norm"] for log in trainer.state.log_history if "grad_norm" in log]
    assert len(logged) == STEPS and all(1e-2 < n < 1e2 for n in logged)
