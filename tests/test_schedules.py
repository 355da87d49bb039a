"""lyricnn.schedules against transformers' schedules and torch's ReduceLROnPlateau, step by step."""
import math
import subprocess
import sys

import numpy as np
import pytest

from lyricnn import schedules as S

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


def _opt(lr):
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)


CASES = [
    ("constant", dict(), lambda o: transformers.get_constant_schedule(o)),
    ("constant_with_warmup", dict(num_warmup_steps=37),
     lambda o: transformers.get_constant_schedule_with_warmup(o, 37)),
    ("linear", dict(num_warmup_steps=30, num_training_steps=250),
     lambda o: transformers.get_linear_schedule_with_warmup(o, 30, 250)),
    ("linear", dict(num_warmup_steps=0, num_training_steps=1),
     lambda o: transformers.get_linear_schedule_with_warmup(o, 0, 1)),
    ("cosine", dict(num_warmup_steps=25, num_training_steps=300),
     lambda o: transformers.get_cosine_schedule_with_warmup(o, 25, 300)),
    ("cosine", dict(num_warmup_steps=10, num_training_steps=200, num_cycles=1.5),
     lambda o: transformers.get_cosine_schedule_with_warmup(o, 10, 200, num_cycles=1.5)),
]


@pytest.mark.parametrize("name,kw,make", CASES)
def test_schedule_matches_transformers(name, kw, make):
    base = 3e-5
    opt = _opt(base)
    ref = make(opt)
    mine = S.get_schedule(name, base, **kw)
    seen = set()
    assert mine.lr == ref.get_last_lr()[0]
    for _ in range(320):  # past the end, where linear/cosine stay at 0
        opt.step()
        ref.step()
        assert mine.step() == ref.get_last_lr()[0]
        assert mine.lr == opt.param_groups[0]["lr"]
        seen.add(mine.lr)
    if kw.get("num_training_steps", 0) > 10 or kw.get("num_warmup_steps", 0) > 10:
        assert len(seen) > 10  # the schedule really moved


def test_schedule_state_roundtrip():
    a = S.get_schedule("cosine", 1e-3, num_warmup_steps=5, num_training_steps=50)
    for _ in range(17):
        a.step()
    b = S.get_schedule("cosine", 1e-3, num_warmup_steps=5, num_training_steps=50)
    b.load_state_dict(a.state_dict())
    for _ in range(40):
        assert a.step() == b.step()
    with pytest.raises(ValueError, match="unknown keys"):
        S.ConstantSchedule(1.0).load_state_dict({"num_cycles": 3})


def test_schedule_bad_arguments():
    with pytest.raises(ValueError, match="unknown schedule 'exp'"):
        S.get_schedule("exp", 1e-3)
    with pytest.raises(ValueError, match="needs num_training_steps"):
        S.get_schedule("linear", 1e-3, num_warmup_steps=3)
    with pytest.raises(ValueError, match="num_warmup_steps must be an int >= 0"):
        S.get_schedule("linear", 1e-3, num_warmup_steps=-1, num_training_steps=10)


PLATEAU = [
    dict(),
    dict(mode="max", factor=0.5, patience=2, threshold=0.01),
    dict(mode="min", factor=0.3, patience=0, threshold=0.1, threshold_mode="abs", cooldown=2),
    dict(mode="max", factor=0.5, patience=1, threshold_mode="abs", threshold=0.0, min_lr=1e-3),
    dict(mode="min", factor=0.9, patience=1, eps=1e-3, min_lr=0.0),
]


@pytest.mark.parametrize("kw", PLATEAU)
def test_reduce_lr_on_plateau_matches_torch(kw):
    r = np.random.default_rng(len(str(kw)))
    lr = 0.1
    opt = _opt(lr)
    ref = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, **kw)
    mine = S.ReduceLROnPlateau(lr, **kw)
    # a noisy metric that improves, then plateaus, then has ties
    metrics = list(np.linspace(1.0, 0.5, 15) + r.normal(0, 0.05, 15)) + [0.5] * 10
    metrics += list(r.choice([0.4, 0.5, 0.6], 40))
    if kw.get("mode") == "max":
        metrics = [-m for m in metrics]
    changes = 0
    for i, m in enumerate(metrics):
        ref.step(m)
        before = mine.lr
        assert mine.step(m) == opt.param_groups[0]["lr"], i
        changes += mine.lr != before
        assert mine.num_bad_epochs == ref.num_bad_epochs and mine.best == ref.best
        assert mine.cooldown_counter == ref.cooldown_counter
        if i == 20:  # resume mid-way
            clone = S.ReduceLROnPlateau(lr, **kw)
            clone.load_state_dict(mine.state_dict())
            mine = clone
    assert changes > 0


def test_reduce_lr_on_plateau_bad_arguments():
    with pytest.raises(ValueError, match="factor should be < 1.0"):
        S.ReduceLROnPlateau(0.1, factor=1.0)
    with pytest.raises(ValueError, match="mode must be 'min' or 'max'"):
        S.ReduceLROnPlateau(0.1, mode="up")
    with pytest.raises(ValueError, match="threshold_mode"):
        S.ReduceLROnPlateau(0.1, threshold_mode="pct")


def test_schedules_import_no_torch():
    code = "import sys; import lyricnn.schedules; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
