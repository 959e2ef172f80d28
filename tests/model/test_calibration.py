import numpy as np
import torch
import torch.nn.functional as F

from core.metrics import expected_calibration_error
from training.model.calibration import fit_temperature, nll


def test_temperature_scaling_fixes_overconfidence():
    rng = np.random.default_rng(2)
    y = torch.tensor(rng.integers(0, 3, 500))
    informative = torch.randn(500, 3) + 1.5 * F.one_hot(y, 3)
    logits = informative * 6  # deliberately over-confident
    t = fit_temperature(logits, y)
    assert t > 2
    assert nll(logits, y, t) < 0.8 * nll(logits, y)
    before = expected_calibration_error(torch.softmax(logits, 1).numpy(), y.numpy())
    after = expected_calibration_error(torch.softmax(logits / t, 1).numpy(), y.numpy())
    assert after < before
    assert torch.equal((logits / t).argmax(1), logits.argmax(1))
