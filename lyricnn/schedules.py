"""Learning-rate schedules (pure Python), step-for-step equal to transformers / torch.

The warmup/decay schedules give exactly the multipliers of transformers'
``get_constant_schedule``, ``get_constant_schedule_with_warmup``,
``get_linear_schedule_with_warmup`` and ``get_cosine_schedule_with_warmup`` (a torch
``LambdaLR``: after construction the step is 0; each ``step()`` advances it by one and the lr is
``base_lr * multiplier(step)``). ``ReduceLROnPlateau`` follows torch's class of that name.
Every schedule has ``state_dict()`` / ``load_state_dict()`` for resuming.
"""
import math

__all__ = ["ConstantSchedule", "ConstantWithWarmupSchedule", "LinearWithWarmupSchedule",
           "CosineWithWarmupSchedule", "ReduceLROnPlateau", "get_schedule", "SCHEDULES"]


class _LambdaSchedule:
    """Base class: lr = base_lr * multiplier(last_step)."""

    name = None

    def __init__(self, base_lr=1.0):
        self.base_lr = float(base_lr)
        self.last_step = 0

    def multiplier(self, step):
        raise NotImplementedError

    @property
    def lr(self):
        """The learning rate for the current step."""
        return self.base_lr * self.multiplier(self.last_step)

    def get_last_lr(self):
        return self.lr

    def step(self):
        """Advance one optimizer step; returns the new lr."""
        self.last_step += 1
        return self.lr

    def state_dict(self):
        return {k: v for k, v in self.__dict__.items()}

    def load_state_dict(self, state):
        unknown = set(state) - set(self.__dict__)
        if unknown:
            raise ValueError("schedule state has unknown keys %s; it was saved by another schedule"
                             % sorted(unknown))
        self.__dict__.update(state)

    def __repr__(self):
        args = ", ".join("%s=%r" % kv for kv in self.__dict__.items())
        return "%s(%s)" % (type(self).__name__, args)


def _check_steps(num_warmup_steps, num_training_steps=None):
    if int(num_warmup_steps) != num_warmup_steps or num_warmup_steps < 0:
        raise ValueError("num_warmup_steps must be an int >= 0, got %r" % (num_warmup_steps,))
    if num_training_steps is not None and (int(num_training_steps) != num_training_steps
                                           or num_training_steps < 0):
        raise ValueError("num_training_steps must be an int >= 0, got %r" % (num_training_steps,))


class ConstantSchedule(_LambdaSchedule):
    """Constant lr (transformers.get_constant_schedule)."""

    name = "constant"

    def multiplier(self, step):
        return 1


class ConstantWithWarmupSchedule(_LambdaSchedule):
    """Linear warmup from 0 over num_warmup_steps, then constant
    (transformers.get_constant_schedule_with_warmup)."""

    name = "constant_with_warmup"

    def __init__(self, base_lr=1.0, num_warmup_steps=0):
        _check_steps(num_warmup_steps)
        super().__init__(base_lr)
        self.num_warmup_steps = int(num_warmup_steps)

    def multiplier(self, step):
        if step < self.num_warmup_steps:
            return float(step) / float(max(1.0, self.num_warmup_steps))
        return 1.0


class LinearWithWarmupSchedule(_LambdaSchedule):
    """Linear warmup, then linear decay to 0 at num_training_steps
    (transformers.get_linear_schedule_with_warmup)."""

    name = "linear"

    def __init__(self, base_lr=1.0, num_warmup_steps=0, num_training_steps=1):
        _check_steps(num_warmup_steps, num_training_steps)
        super().__init__(base_lr)
        self.num_warmup_steps = int(num_warmup_steps)
        self.num_training_steps = int(num_training_steps)

    def multiplier(self, step):
        w, n = self.num_warmup_steps, self.num_training_steps
        if step < w:
            return float(step) / float(max(1, w))
        return max(0.0, float(n - step) / float(max(1, n - w)))


class CosineWithWarmupSchedule(_LambdaSchedule):
    """Linear warmup, then cosine decay (num_cycles=0.5: to 0 at num_training_steps)
    (transformers.get_cosine_schedule_with_warmup)."""

    name = "cosine"

    def __init__(self, base_lr=1.0, num_warmup_steps=0, num_training_steps=1, num_cycles=0.5):
        _check_steps(num_warmup_steps, num_training_steps)
        super().__init__(base_lr)
        self.num_warmup_steps = int(num_warmup_steps)
        self.num_training_steps = int(num_training_steps)
        self.num_cycles = float(num_cycles)

    def multiplier(self, step):
        w, n = self.num_warmup_steps, self.num_training_steps
        if step < w:
            return float(step) / float(max(1, w))
        progress = float(step - w) / float(max(1, n - w))
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * float(self.num_cycles) * 2.0 * progress)))


SCHEDULES = {c.name: c for c in (ConstantSchedule, ConstantWithWarmupSchedule, LinearWithWarmupSchedule,
                                 CosineWithWarmupSchedule)}


def get_schedule(name, base_lr, num_warmup_steps=0, num_training_steps=None, **kwargs):
    """A per-step schedule by its transformers name: 'constant', 'constant_with_warmup',
    'linear' or 'cosine'."""
    if name not in SCHEDULES:
        raise ValueError("unknown schedule %r; choose one of %s (or use ReduceLROnPlateau)"
                         % (name, sorted(SCHEDULES)))
    if name == "constant":
        if num_warmup_steps:
            raise ValueError("schedule 'constant' has no warmup; use 'constant_with_warmup'")
        return ConstantSchedule(base_lr)
    if name == "constant_with_warmup":
        return ConstantWithWarmupSchedule(base_lr, num_warmup_steps)
    if num_training_steps is None:
        raise ValueError("schedule %r needs num_training_steps" % name)
    return SCHEDULES[name](base_lr, num_warmup_steps, num_training_steps, **kwargs)


class ReduceLROnPlateau:
    """Reduce the lr by `factor` when a metric stops improving for `patience` evaluations,
    exactly like torch.optim.lr_scheduler.ReduceLROnPlateau (one parameter group).

    Call ``step(metric)`` after each evaluation; it returns the (possibly reduced) lr.
    """

    def __init__(self, lr, mode="min", factor=0.1, patience=10, threshold=1e-4, threshold_mode="rel",
                 cooldown=0, min_lr=0.0, eps=1e-8):
        if factor >= 1.0:
            raise ValueError("factor should be < 1.0, got %r" % (factor,))
        if mode not in ("min", "max"):
            raise ValueError("mode must be 'min' or 'max', got %r" % (mode,))
        if threshold_mode not in ("rel", "abs"):
            raise ValueError("threshold_mode must be 'rel' or 'abs', got %r" % (threshold_mode,))
        self.lr = float(lr)
        self.mode = mode
        self.factor = factor
        self.patience = patience
        self.threshold = threshold
        self.threshold_mode = threshold_mode
        self.cooldown = cooldown
        self.min_lr = min_lr
        self.eps = eps
        self.last_epoch = 0
        self.best = math.inf if mode == "min" else -math.inf
        self.cooldown_counter = 0
        self.num_bad_epochs = 0

    @property
    def in_cooldown(self):
        return self.cooldown_counter > 0

    def _is_better(self, a, best):
        if self.mode == "min" and self.threshold_mode == "rel":
            return a < best * (1.0 - self.threshold)
        if self.mode == "min":
            return a < best - self.threshold
        if self.threshold_mode == "rel":
            return a > best * (self.threshold + 1.0)
        return a > best + self.threshold

    def get_last_lr(self):
        return self.lr

    def step(self, metric):
        """Record one evaluation's metric; returns the lr to use from now on."""
        current = float(metric)
        self.last_epoch += 1
        if self._is_better(current, self.best):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.in_cooldown:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            new_lr = max(self.lr * self.factor, self.min_lr)
            if self.lr - new_lr > self.eps:
                self.lr = new_lr
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        return self.lr

    def state_dict(self):
        return dict(self.__dict__)

    def load_state_dict(self, state):
        unknown = set(state) - set(self.__dict__)
        if unknown:
            raise ValueError("ReduceLROnPlateau state has unknown keys %s" % sorted(unknown))
        self.__dict__.update(state)
