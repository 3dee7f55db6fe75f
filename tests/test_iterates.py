import math

import torch

from doodl_pl.modules.iterates import IterateLog


def image(v: float) -> torch.Tensor:
    return torch.full((3, 2, 2), v)


def test_keep_best_outputs_the_lowest_score_and_its_step():
    log = IterateLog(2, keep_best=True)
    for step, (a, b) in enumerate([(0.5, 0.4), (0.2, 0.6), (0.3, 0.7)]):
        log.observe(0, a, a, step, image(a))
        log.observe(1, b, b, step, image(b))
    score, at, chosen, out = log.final(0, 0.25, 3, image(0.25))
    assert (score, at, chosen) == (0.2, 1, "best") and torch.equal(out, image(0.2))
    score, at, chosen, out = log.final(1, 0.1, 3, image(0.1))  # the final image is the best
    assert (score, at, chosen) == (0.1, 3, "last") and torch.equal(out, image(0.1))
    assert log.scores[0] == [0.5, 0.2, 0.3, 0.25] and log.objective[0] == [0.5, 0.2, 0.3]


def test_without_keep_best_the_last_image_is_output():
    log = IterateLog(1, keep_best=False)
    log.observe(0, 0.1, 0.1, 0, image(0.1))
    assert log.final(0, 0.9, 1, image(0.9))[:3] == (0.9, 1, "last")


def test_first_failure_sticks_and_non_finite_scores_are_never_best():
    log = IterateLog(1, keep_best=True)
    log.observe(0, 0.4, 0.4, 0, image(0.4))
    log.observe(0, math.nan, math.nan, 1, image(9.0))
    log.fail(0, "later reason")
    assert log.failed == ["non-finite loss (nan) at optimisation step 1"]
    assert log.final(0, 0.5, 2, image(0.5))[:3] == (0.4, 0, "best")


def test_drift_keeps_the_largest_and_nan_sticks():
    log = IterateLog(2, keep_best=False)
    for d in (1e-6, 3e-6, 2e-6):
        log.note_drift(0, d)
    for d in (1e-6, math.nan, 5e-6):
        log.note_drift(1, d)
    assert log.drift[0] == 3e-6 and math.isnan(log.drift[1])
