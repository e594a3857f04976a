"""SL-SAM: sparse layer SAM (arXiv 2602.09395), as docs/algorithms.md states it."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch

from ..ops import upload
from ..ops.validation import bandit_options
from . import distributed
from .arms import ArmSpec, resolve_always_active, resolve_arms
from .checkpoint import check_generator_state, check_saved_probabilities
from .checks import check_dense_grads, check_scaler, check_seed, check_unit_interval
from .release import hold_flags
from .rng import make_generator
from .sam_coin import SamCoin, SamProb, check_descent, check_resample_every
from .sharpness_aware import Perturbation, SharpnessAwareOptimizer
from .warn import user_stacklevel


class SLSAM(SharpnessAwareOptimizer):
    """SAM on a bandit-sampled subset of the parameter tensors ("arms").

    Every tensor that requires grad when the optimizer is built is an arm (or, with
    ``arms=``, belongs to one), except those named in ``always_active``. Each step only the
    active arms require grad, are perturbed and are updated; inactive arms keep ``grad=None``,
    so the base optimizer leaves them (and their state) untouched. After the descent the
    EXP3-style bandit updates the keep-probabilities from the first-pass gradient norms and the
    next active set is drawn, so ``first_step``/``second_step`` and ``step(closure)`` behave
    the same.

    The arms' ``requires_grad`` flags belong to the SLSAM while it lives: call
    :meth:`release` when training ends (it also runs when the optimizer is garbage-collected)
    to make every arm require grad again. Until then no optimizer of this package can be built
    over an arm. A tensor frozen when the SLSAM was built is no arm and is never touched; if
    the user unfreezes it later, it is perturbed and updated every step, as an
    ``always_active`` tensor is, with a warning (once): build the SLSAM after unfreezing it
    to have it sampled.

    The bandit's rule (``bandit=``), over the active arms ``A`` with ``q_i = (n_i / p_i)^2``
    (first-pass gradient norm ``n_i``, probability ``p_i``):

    * ``"paper"`` (default, the paper's): loss ``l_i = max_A q - q_i``,
      ``v_i = p_i exp(-alpha l_i / p_i)`` (inactive arms keep ``p_i``), the capped projection
      onto ``sum = B``, the clip to ``[1e-8, 1]``. The loss has the units of the squared
      gradients: how fast the probabilities move depends on the scale of the loss (large
      gradients pin them to the floor or 1 within a few steps, small ones never move them).
    * ``"robust"``: scale free, EXP3 with a loss in ``[0, 1]``: ``l_i = 1 - q_i / max_A q``
      (0 if every ``q_i`` is 0), the same ``v_i`` with ``eta`` for ``alpha``, the same
      projection, then the exploration mixture ``p = (1 - gamma) proj + gamma s``, which keeps
      ``sum(p) = B`` and every ``p_i`` in ``[gamma s, 1]``, then the same clip. Multiplying
      every gradient (e.g. the loss) by a constant leaves the probabilities unchanged.
      Dividing by ``max_A q`` rather than by the range ``max_A q - min_A q`` keeps nearly
      equal arms nearly equal instead of stretching rounding-level differences to the whole
      of ``[0, 1]``; it is the paper's loss under the per-step learning rate
      ``eta / max_A q``. Not in the paper.

    Args:
        params, base_optimizer, rho, adaptive, backend, max_grad_norm, ascent, **base_kwargs:
            as for :class:`SAM`.
        sample_ratio: ``s``, the expected fraction of arms active (budget ``B = s * N``).
        bandit_lr: the bandit learning rate: the paper rule's ``alpha`` (default 1e-3, in the
            units of 1 / squared gradient norm), the robust rule's dimensionless EXP3 ``eta``
            (default 0.05). None takes the rule's default.
        p_min: the probability floor in the paper rule's reward (it cancels out of the update).
        seed: seeds the draws; None draws a fresh seed.
        arms: None (one arm per tensor, as in the paper) or a list of arms, each a module,
            a tensor or a list of tensors, together covering every trainable tensor exactly
            once, e.g. :func:`arms_by_module` ``(model)``. An arm is sampled, perturbed and
            updated as a whole, and the bandit sees its L2 norm over its tensors.
        always_active: tensors (or a module, or a list of modules and tensors) that are not
            arms: they require grad, are perturbed and are updated every step, and the bandit
            never sees them; e.g. a freshly initialised classifier head, which as an arm is
            updated on only about ``s`` of the steps. ``sample_ratio`` then applies to the
            remaining arms. ``"auto"`` takes every trainable tensor with ``ndim <= 1``
            (biases, normalisation weights; :func:`auto_always_active_fraction` tells what
            share of the elements that is), and combines with the rest in a list, e.g.
            ``always_active=("auto", model.head)``. Not part of the paper's algorithm; None
            (the default) follows it.
        process_group: the ranks that share the active set when ``torch.distributed`` is
            initialised (None: all of them). Every draw is broadcast from its first rank, so
            the ranks cannot diverge; with ``ascent="per_rank"`` the bandit sees the
            first-pass squared norms averaged over the ranks.
        bandit: the update rule, ``"paper"`` or ``"robust"`` (above). A checkpoint records it
            and loads only into an SLSAM with the same rule.
        exploration: the robust rule's ``gamma`` in ``[0, 1]``: every probability stays at
            least ``gamma * sample_ratio``. None takes 0.1; the paper rule takes none.
        descent: ``"sampled"`` (the paper's: the descent updates the sampled arms) or
            ``"all"``: the first backward still computes only the sampled arms' gradients,
            only they are perturbed (``e = rho g_S / ||g_S||``) and backed up, but before the
            second backward every trainable tensor requires grad, so the base optimizer
            updates all of them with the gradient at ``w + e`` (weight decay and moments
            included). The bandit learns from the first pass either way. Not in the paper.
        resample_every: ``K`` (default 1, the paper's): each draw of the active set is held
            for ``K`` steps; the bandit still updates every step from the active arms'
            first-pass norms. Not in the paper.
        sam_prob: the probability that a step is sharpness-aware (default 1, the paper's),
            or a schedule ``step_index -> probability`` from :mod:`slsam_kernels.schedules`
            (e.g. SAM in the last quarter only: ``schedules.piecewise([3 * T // 4], [0, 1])``);
            otherwise the step is a plain base step with one backward (:meth:`plain_step`).
            The coin for a step is flipped when its active set is drawn (at the end of the
            step before), so a plain step's backward already has the tensors it updates
            requiring grad: the sampled arms, or every tensor with ``descent="all"``. A plain
            step's gradients at ``w`` feed the bandit as a first pass does. The coin has its
            own seeded generator (derived from ``seed``), saved in checkpoints. RST's time
            sparsity on top of the layer sparsity; not in the paper.

    :attr:`active_param_fraction` reports what backpropagation computes in the step about to
    be taken; :attr:`update_counts` counts, per trainable tensor, the steps that updated it.
    The step index, the held draw's age, the coin and the counts travel in
    :meth:`state_dict`.
    """

    # Set at the end of __init__: torch's Optimizer.__init__ adds the groups it is built with.
    _arms_fixed = False
    _checkpoint_kind = "SLSAM"

    def __init__(
        self,
        params: Any,
        base_optimizer: type[torch.optim.Optimizer],
        rho: float = 0.05,
        sample_ratio: float = 0.5,
        bandit_lr: float | None = None,
        p_min: float = 1e-3,
        adaptive: bool = False,
        seed: int | None = None,
        backend: str = "auto",
        max_grad_norm: float | None = None,
        arms: Sequence[ArmSpec] | None = None,
        always_active: ArmSpec | str | Sequence[ArmSpec | str] | None = None,
        ascent: str = "global",
        process_group: Any = None,
        bandit: str = "paper",
        exploration: float | None = None,
        descent: str = "sampled",
        resample_every: int = 1,
        sam_prob: SamProb = 1.0,
        **base_kwargs: Any,
    ) -> None:
        check_unit_interval("sample_ratio", sample_ratio, include_zero=False)
        check_descent(descent)
        check_resample_every(resample_every)
        bandit_lr, exploration = bandit_options(
            bandit, bandit_lr, exploration, names=("bandit", "bandit_lr", "exploration")
        )
        check_unit_interval("p_min", p_min, include_zero=False)
        check_seed(seed)
        #: The seed of the draws (None: a fresh one was drawn).
        self.seed = seed
        super().__init__(
            params,
            base_optimizer,
            rho=rho,
            adaptive=adaptive,
            backend=backend,
            max_grad_norm=max_grad_norm,
            ascent=ascent,
            process_group=process_group,
            **base_kwargs,
        )
        self.sample_ratio = float(sample_ratio)
        self.bandit = bandit
        self.bandit_lr = bandit_lr
        self.exploration = exploration
        self.p_min = float(p_min)
        trainable = [p for g in self.param_groups for p in g["params"] if p.requires_grad]
        #: The trainable tensors (the arms' and the always-active ones), in param-group order.
        self._trainable = trainable
        self._always_active = resolve_always_active(always_active, trainable)
        trainable = [p for p in trainable if p not in self._always_active]
        members = [(p,) for p in trainable] if arms is None else resolve_arms(arms, trainable)
        #: The arms: tensors (per-tensor arms) or tuples of tensors (``arms=`` groups).
        self.arms: list[Any] = trainable if arms is None else members
        # keyed by id: a tensor's __hash__ is a Python call, a cost per tensor every step
        self._arm_index = {id(p): i for i, arm in enumerate(members) for p in arm}
        self._arm_tensors = [p for arm in members for p in arm]
        self._tensor_arms = torch.tensor(
            [i for i, arm in enumerate(members) for _ in arm], dtype=torch.long
        )
        self._arm_numels = torch.tensor(
            [sum(p.numel() for p in arm) for arm in members], dtype=torch.float64
        )
        self._always_active_numel = sum(p.numel() for p in self._always_active)
        self.budget = self.sample_ratio * len(self.arms)
        self._probs = torch.full(
            (len(self.arms),),
            self.sample_ratio,
            dtype=torch.float32,
            device=self._ops.bandit_device,
        )
        self._world_size = distributed.world_size(process_group)
        agreed_seed = distributed.agreed_seed(seed, process_group, self._device)
        self._generator = make_generator(agreed_seed)
        self._active_mask = torch.zeros(len(self.arms), dtype=torch.bool)
        self._bandit_index_cache: tuple[tuple[int, ...], tuple[torch.Tensor, ...]] | None = None
        # Tensors in the groups that were frozen now: no arms; one unfrozen later warns once.
        self._frozen_at_build = {id(p) for p in self._all_params() if not p.requires_grad}
        self._warned_unfrozen = False
        self._flags = hold_flags(self, self._arm_tensors)
        #: ``"sampled"`` (the paper's) or ``"all"``: which tensors the descent updates.
        self.descent = descent
        #: Steps each draw is held for (1: the paper's, a new draw every step).
        self.resample_every = resample_every
        self._coin = SamCoin(sam_prob, agreed_seed)
        #: Steps taken (SAM and plain, skipped ones included); ``sam_prob``'s schedule index.
        self.step_index = 0
        self._steps_held = 0
        self._next_is_sam = self._coin.flip(0)
        self._update_counts = torch.zeros(len(self._trainable), dtype=torch.int64)
        self.sample()
        self._arms_fixed = True

    def _check_groups(self, groups: list[dict[str, Any]]) -> None:
        super()._check_groups(groups)
        if not any(p.requires_grad for g in groups for p in g["params"]):
            raise ValueError(
                "no parameter requires grad, so SL-SAM has no arms: unfreeze the tensors to "
                "train before building the optimizer"
            )

    def _settings(self) -> dict[str, Any]:
        settings = {
            **super()._settings(),
            "arms": self.num_arms,
            "sample_ratio": self.sample_ratio,
            "bandit": self.bandit,
            "bandit_lr": self.bandit_lr,
            "p_min": self.p_min,
            "seed": self.seed,
        }
        if self.exploration is not None:
            settings["exploration"] = self.exploration
        if self._always_active:
            settings["always_active"] = f"{len(self._always_active)} tensors"
        if self.released:
            settings["released"] = True
        return settings

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Allowed only while the optimizer is being built: the arms are fixed after that."""
        if self._arms_fixed:
            raise ValueError(
                "SLSAM's arms are fixed when it is built: create a new SLSAM over all the "
                "parameter groups instead of adding one"
            )
        super().add_param_group(param_group)

    def release(self) -> None:
        """Give the arms' ``requires_grad`` flags back: every arm requires grad again, as when
        this SLSAM was built, and the arms it had frozen lose any stale ``.grad`` (the weights
        and the optimizer state stay as they are). Only the flags are touched, so a DDP or
        FSDP wrapper around the model is unaffected. Afterwards this SLSAM refuses to step,
        sample or load a checkpoint (``state_dict()`` still works); build a new one to train
        on. Calling it again does nothing. It runs by itself when the optimizer is
        garbage-collected."""
        if self._perturbation is not None:
            raise RuntimeError(
                "release() between first_step() and second_step(): finish the step first"
            )
        self._flags()

    @property
    def released(self) -> bool:
        """True once :meth:`release` gave the flags back."""
        return not self._flags.alive

    def _check_not_released(self, action: str) -> None:
        if self.released:
            raise RuntimeError(
                f"this SLSAM was released (release() gave its arms' requires_grad flags back), "
                f"so it cannot {action}: build a new SLSAM to train on"
            )

    def _two_pass_step(
        self, closure: Callable[[], Any], scaler: torch.amp.GradScaler | None
    ) -> Any:
        self._check_not_released("step")  # before the closure runs
        return super()._two_pass_step(closure, scaler)

    def _check_loadable(self) -> None:
        super()._check_loadable()
        self._check_not_released("load a checkpoint")

    @property
    def num_arms(self) -> int:
        """N, the number of arms."""
        return len(self.arms)

    @property
    def probs(self) -> torch.Tensor:
        """The keep-probabilities, fp32, one per arm (a copy, on the CPU)."""
        return self._probs.to("cpu", copy=True)

    @property
    def active_mask(self) -> torch.Tensor:
        """The current active set, a bool tensor with one entry per arm (a copy)."""
        return self._active_mask.clone()

    @property
    def active_param_fraction(self) -> float:
        """What backpropagation computes in the step about to be taken (the current active
        set and coin): the fraction of the trainable elements (the arms' and the
        always-active tensors') whose weight gradient is computed, averaged over the step's
        backward passes. The paper's step: the active fraction ``f``; ``descent="all"``:
        ``(f + 1) / 2`` (the second pass computes every gradient); a plain step
        (``sam_prob``): its one backward, ``f``, or 1 with ``descent="all"``."""
        total = float(self._arm_numels.sum()) + self._always_active_numel
        active = float(self._arm_numels[self._active_mask].sum()) + self._always_active_numel
        fraction = active / total if total > 0 else 1.0
        if self.descent == "sampled":
            return fraction
        return (fraction + 1.0) / 2.0 if self._next_is_sam else 1.0

    @property
    def sam_prob(self) -> SamProb:
        """The probability (or schedule) of a sharpness-aware step."""
        return self._coin.sam_prob

    @property
    def next_step_is_sam(self) -> bool:
        """Whether the step about to be taken is sharpness-aware (the coin is flipped when its
        active set is drawn). :meth:`step` follows it; a manual loop calls :meth:`first_step`,
        a second backward and :meth:`second_step` when it is True, else :meth:`plain_step`."""
        return self._next_is_sam

    @property
    def update_counts(self) -> torch.Tensor:
        """How many steps the base optimizer updated each trainable tensor (it had a gradient
        and the step was not skipped), int64, one entry per trainable tensor in param-group
        order (a copy). Kept in checkpoints."""
        return self._update_counts.clone()

    def sample(self, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Draw a new active set, or impose ``mask`` (bool, one entry per arm in param-group
        order), and set ``requires_grad`` to match. Inactive arms lose any stale ``.grad``.
        Returns the active mask."""
        if self._perturbation is not None:
            raise RuntimeError("sample() between first_step() and second_step(): finish the step")
        self._check_not_released("sample")
        if mask is None:
            mask = self._ops.sample_active(self._probs, self._generator)
        else:
            mask = self._checked_mask(mask)
        if self._world_size > 1:
            # gloo cannot broadcast bool tensors
            mask = distributed.broadcast_from_rank0(mask.byte(), self._group, self._device).bool()
        if not torch.equal(mask, self._active_mask):
            self._bandit_index_cache = None
        self._active_mask = mask.clone()
        self._steps_held = 0
        self._set_flags(mask)
        return mask.clone()

    def _set_flags(self, mask: torch.Tensor) -> None:
        """``requires_grad`` for the coming backward: the arms of ``mask``, or every arm on a
        plain step with ``descent="all"`` (it updates every tensor)."""
        # Only tensors whose flag changes are touched (a requires_grad_ call costs 2.5x a read
        # of the flag), over one flat list: at 1,000 tensors and s = 0.2 the whole draw takes
        # 0.13 ms, where setting every tensor's flag alone takes 0.12 (benchmarks.host_bandit,
        # one thread, 2026-12-03). A tensor that stays inactive keeps grad None, as backward
        # cannot write it.
        if self.descent == "all" and not self._next_is_sam:
            flags = [True] * len(self._arm_tensors)
        else:
            flags = mask[self._tensor_arms].tolist()
        for p, active in zip(self._arm_tensors, flags, strict=True):
            if p.requires_grad is not active:
                p.requires_grad = active
                if not active:
                    p.grad = None

    def _checked_mask(self, mask: Any) -> torch.Tensor:
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
            raise TypeError("mask must be a torch.bool tensor with one entry per arm")
        if mask.shape != (self.num_arms,):
            raise ValueError(
                f"mask must have shape ({self.num_arms},), one entry per arm, "
                f"got {tuple(mask.shape)}"
            )
        mask = mask.detach().cpu()
        if not bool(mask.any()):
            raise ValueError("mask selects no arm: at least one arm must be active")
        return mask

    def _ascent_params(self) -> list[tuple[torch.Tensor, dict[str, Any]]]:
        self._check_not_released("step")  # first_step() asks first, before changing anything
        if self.descent == "all" and not self._next_is_sam:
            # a manual first_step() on a plain step's gradients (every tensor has one): the
            # ascent still covers only the sampled arms and the always-active tensors
            active = self._active_tensor_ids()
            pairs = [
                (p, g)
                for g in self.param_groups
                for p in g["params"]
                if p.grad is not None and id(p) in active
            ]
        else:
            pairs = [
                (p, g)
                for g in self.param_groups
                for p in g["params"]
                if p.grad is not None and p.requires_grad
            ]
        if self._frozen_at_build and not self._warned_unfrozen:
            self._warn_unfrozen([p for p, _ in pairs])
        return pairs

    def _warn_unfrozen(self, params: list[torch.Tensor]) -> None:
        """Warn once when a tensor frozen at construction has a gradient now."""
        count = sum(id(p) in self._frozen_at_build for p in params)
        if count:
            self._warned_unfrozen = True
            warnings.warn(
                f"SLSAM: {count} tensor(s) of the param groups were frozen when this SLSAM was "
                "built and require grad now: they are no arms, so they are perturbed and "
                "updated every step, as always_active tensors are; to have them sampled, "
                "release() this SLSAM and build a new one after unfreezing them",
                UserWarning,
                stacklevel=user_stacklevel(),
            )

    def _active_tensor_ids(self) -> set[int]:
        """ids of the tensors of the active arms and of the always-active tensors."""
        flags = self._active_mask[self._tensor_arms].tolist()
        active = {id(p) for p, on in zip(self._arm_tensors, flags, strict=True) if on}
        return active | {id(p) for p in self._always_active}

    def first_step(
        self, zero_grad: bool = False, scaler: torch.amp.GradScaler | None = None
    ) -> None:
        """As :meth:`SAM.first_step`, over the active arms (and the always-active tensors).
        With ``descent="all"`` every arm then requires grad, so the second backward computes
        the gradient at ``w + e`` of every trainable tensor."""
        super().first_step(zero_grad=zero_grad, scaler=scaler)
        if self.descent == "all":
            self._set_flags(torch.ones_like(self._active_mask))

    def _descent_pairs(
        self, perturbation: Perturbation
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        if self.descent == "sampled":
            return perturbation.params, perturbation.backups
        perturbed = {id(p) for p in perturbation.params}
        unperturbed = [p for p in self._trainable if p.grad is not None and id(p) not in perturbed]
        return [*perturbation.params, *unperturbed], [*perturbation.backups, *unperturbed]

    def step(  # type: ignore[override]
        self,
        closure: Callable[[], Any] | None = None,
        scaler: torch.amp.GradScaler | None = None,
    ) -> Any:
        """A SAM step over the active arms (see :meth:`SAM.step` for the two forms), or, when
        :attr:`next_step_is_sam` is False (``sam_prob`` < 1), a plain step: the closure runs
        only in the closure-only form (for the gradient at ``w``, whose result is returned;
        otherwise None is returned) and :meth:`plain_step` follows."""
        if closure is None or self._next_is_sam:
            return super().step(closure, scaler)
        check_scaler(scaler)
        loss = self._first_pass(closure) if self.first_pass_pending() else None
        self.plain_step(scaler=scaler)
        return loss

    @torch.no_grad()
    def plain_step(
        self, zero_grad: bool = False, scaler: torch.amp.GradScaler | None = None
    ) -> None:
        """The base optimizer's step with the gradients at ``w`` (clipped to
        ``max_grad_norm``; skipped on inf/NaN), fused in place where the backend can; the
        bandit learns from the active arms' norms, then the next active set and coin are
        drawn. For a manual loop on a step whose :attr:`next_step_is_sam` is False."""
        if self._perturbation is not None:
            raise RuntimeError("plain_step() between first_step() and second_step()")
        check_scaler(scaler)
        with_grad = [p for p in self._trainable if p.grad is not None]
        if not with_grad:
            raise ValueError(
                "no parameter has a gradient: call loss.backward() before plain_step()"
            )
        check_dense_grads(with_grad)
        if scaler is not None:
            scaler.unscale_(self)
        active = self._active_tensor_ids()
        first_pass = [p for p in with_grad if id(p) in active]
        sqnorms = (
            self._grad_sqnorms([p.grad for p in first_pass], None)
            if first_pass
            else torch.zeros(0, dtype=torch.float32, device=self._device)
        )
        took_step = self._prepare_descent()
        if took_step:
            self._step_in_place()
        self._opt_called = True
        record = Perturbation(first_pass, first_pass, [], sqnorms, sqnorms.sum().sqrt(), scaler)
        self._after_descent(record, took_step)
        if zero_grad:
            self.zero_grad()
        self._marks.record(self._all_params())

    def _after_descent(self, perturbation: Perturbation, took_step: bool) -> None:
        if took_step:
            updated = [p.grad is not None for p in self._trainable]
            self._update_counts += torch.tensor(updated, dtype=torch.int64)
            self._update_bandit(perturbation)
        self._next_draw()

    def _next_draw(self) -> None:
        """End of a step: flip the next step's coin, then draw its active set, or hold the
        current one for ``resample_every`` steps, and set ``requires_grad`` to match."""
        self.step_index += 1
        self._next_is_sam = self._coin.flip(self.step_index)
        held = self._steps_held + 1
        if held < self.resample_every:
            self._steps_held = held
            self._set_flags(self._active_mask)
        else:
            self.sample()

    def _update_bandit(self, perturbation: Perturbation) -> None:
        gather, active_idx = self._bandit_indices(perturbation.params)
        tensor_sq = perturbation.grad_sqnorms
        # [active arm, member]: the squared norms of each active arm's tensors, padded with 0
        members = torch.cat([tensor_sq, tensor_sq.new_zeros(1)])[gather]
        # Summed member by member, in param-group order: the same additions on every device
        # (index_add_ on CUDA adds with atomics, in whatever order they land).
        sqnorms = members[:, 0]
        for k in range(1, members.shape[1]):
            sqnorms = sqnorms + members[:, k]
        if self.ascent == "per_rank":
            sqnorms = distributed.mean_over_ranks(sqnorms, self._group, self._device)
        norms = sqnorms.sqrt()
        self._probs = self._ops.bandit_update(
            self._probs,
            norms,
            active_idx,
            self.budget,
            self.bandit_lr,
            self.p_min,
            rule=self.bandit,
            exploration=self.exploration,
        )

    def _bandit_indices(self, params: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """For the bandit update after a step that perturbed ``params``: ``gather``, on their
        device, row ``a`` the positions in ``params`` of active arm ``a``'s tensors (ascending,
        then ``len(params)``, the zero slot: an active arm that got no gradient, unused in
        the forward, counts as norm 0), and the active arms' indices, on the bandit's device.
        Always-active tensors are in no arm, so in no row. Built on the host and uploaded
        once per active set (and set of tensors with gradients), not every step."""
        key = tuple(map(id, params))
        if self._bandit_index_cache is not None and self._bandit_index_cache[0] == key:
            return self._bandit_index_cache[1]
        active = self._active_mask.nonzero().squeeze(1)
        rows: dict[int, list[int]] = {arm: [] for arm in active.tolist()}
        for i, p in enumerate(params):
            arm = self._arm_index.get(id(p))
            if arm in rows:
                rows[arm].append(i)
        width = max([1, *(len(row) for row in rows.values())])
        zero = len(params)
        gather = torch.tensor(
            [row + [zero] * (width - len(row)) for row in rows.values()], dtype=torch.long
        )
        if self._ops.host_bandit:
            indices = upload(gather, params[0].device), active
        else:  # one copy for both
            both = upload(torch.cat([gather.flatten(), active]), params[0].device)
            indices = both[: gather.numel()].view_as(gather), both[gather.numel() :]
        self._bandit_index_cache = (key, indices)
        return indices

    def _wrapper_state(self) -> dict[str, Any]:
        return {
            "bandit": self.bandit,
            "probs": self._probs.to("cpu", copy=True),
            "active_mask": self._active_mask.clone(),
            "generator": self._generator.get_state(),
            **self._schedule_state(),
        }

    def _schedule_state(self) -> dict[str, Any]:
        """The step index, the held draw's age, the coin (its generator and the next step's
        side) and the update counts."""
        return {
            "step_index": self.step_index,
            "steps_held": self._steps_held,
            "next_is_sam": self._next_is_sam,
            "coin_generator": self._coin.get_state(),
            "update_counts": self._update_counts.clone(),
        }

    def _check_schedule_state(self, wrapper_state: dict[str, Any]) -> None:
        """Refuse a corrupt schedule state; a checkpoint from before these options has
        none."""
        if "step_index" not in wrapper_state:
            return
        for key, high in (("step_index", None), ("steps_held", self.resample_every)):
            value = wrapper_state.get(key)
            if (
                isinstance(value, bool)
                or not isinstance(value, int)
                or value < 0
                or (high is not None and value >= high)
            ):
                limit = "" if high is None else f" and < resample_every = {high}"
                raise ValueError(
                    f"SLSAM state dict needs an int {key} >= 0{limit}, got {value!r}: build the "
                    "SLSAM with the resample_every it was saved with"
                )
        if not isinstance(wrapper_state.get("next_is_sam"), bool):
            raise ValueError("SLSAM state dict needs a bool next_is_sam; was it saved by SLSAM?")
        SamCoin.check_state(wrapper_state.get("coin_generator"))
        counts = wrapper_state.get("update_counts")
        if (
            not isinstance(counts, torch.Tensor)
            or counts.dtype != torch.int64
            or counts.shape != self._update_counts.shape
        ):
            raise ValueError(
                f"SLSAM state dict needs int64 update_counts, one per trainable tensor "
                f"({len(self._trainable)}): the checkpoint is from another model"
            )

    def _check_wrapper_state(self, wrapper_state: dict[str, Any]) -> None:
        check_saved_probabilities(wrapper_state.get("probs"), self.num_arms, self.budget)
        # checkpoints from before the rule was recorded were all made with the paper rule
        rule = wrapper_state.get("bandit", "paper")
        if rule != self.bandit:
            raise ValueError(
                f"this state dict is from an SLSAM with bandit={rule!r}, this one has "
                f"bandit={self.bandit!r}: its probabilities follow another rule; build the "
                f"SLSAM with bandit={rule!r} to resume it"
            )
        self._checked_mask(wrapper_state.get("active_mask"))
        check_generator_state(wrapper_state.get("generator"), "SLSAM")
        self._check_schedule_state(wrapper_state)

    def _load_wrapper_state(self, wrapper_state: dict[str, Any]) -> None:
        probs = wrapper_state["probs"].detach()
        self._probs = probs.to(self._ops.bandit_device, torch.float32, copy=True)
        self._generator.set_state(wrapper_state["generator"].cpu())
        if "step_index" in wrapper_state:
            self.step_index = wrapper_state["step_index"]
            self._next_is_sam = wrapper_state["next_is_sam"]
            self._coin.set_state(wrapper_state["coin_generator"])
            self._update_counts = wrapper_state["update_counts"].clone()
        self.sample(wrapper_state["active_mask"])
        self._steps_held = wrapper_state.get("steps_held", 0)
