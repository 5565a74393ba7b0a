"""Each loss against values computed by hand from its formula."""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np
import pytest

from mlx_dpo.train.losses import dpo_losses, pair_stats, stats_to_metrics

# Two pairs: policy/reference summed log-probs and completion lengths.
PC, PR = [-10.0, -20.0], [-12.0, -15.0]
RC, RR = [-11.0, -19.0], [-11.5, -16.0]
NC, NR = [4.0, 8.0], [5.0, 2.0]


def sig(x):
    return 1 / (1 + math.exp(-x))


def run(loss, **kw):
    out = dpo_losses(*(mx.array(v) for v in (PC, PR, RC, RR, NC, NR)), loss=loss, **kw)
    return [np.array(o).tolist() for o in out]


def h(i):
    return (PC[i] - RC[i]) - (PR[i] - RR[i])


def test_sigmoid_matches_hand_computation():
    losses, cr, rr = run("sigmoid", beta=0.1)
    for i in range(2):
        assert losses[i] == pytest.approx(-math.log(sig(0.1 * h(i))), rel=1e-6)
        assert cr[i] == pytest.approx(0.1 * (PC[i] - RC[i]), rel=1e-6)
        assert rr[i] == pytest.approx(0.1 * (PR[i] - RR[i]), rel=1e-6)


def test_label_smoothing_is_conservative_dpo():
    eps, beta = 0.2, 0.5
    losses, _, _ = run("sigmoid", beta=beta, label_smoothing=eps)
    for i in range(2):
        z = beta * h(i)
        expected = -(1 - eps) * math.log(sig(z)) - eps * math.log(sig(-z))
        assert losses[i] == pytest.approx(expected, rel=1e-6)


def test_ipo_uses_length_averaged_logratios():
    beta = 0.25
    losses, _, _ = run("ipo", beta=beta)
    for i in range(2):
        hi = (PC[i] - RC[i]) / NC[i] - (PR[i] - RR[i]) / NR[i]
        assert losses[i] == pytest.approx((hi - 1 / (2 * beta)) ** 2, rel=1e-6)


def test_hinge():
    losses, _, _ = run("hinge", beta=0.3)
    for i in range(2):
        assert losses[i] == pytest.approx(max(0.0, 1 - 0.3 * h(i)), rel=1e-6, abs=1e-7)


def test_simpo_is_reference_free():
    beta, gamma = 2.0, 0.5
    losses, cr, rr = run("simpo", beta=beta, simpo_gamma=gamma)
    for i in range(2):
        z = beta * (PC[i] / NC[i] - PR[i] / NR[i]) - gamma
        assert losses[i] == pytest.approx(-math.log(sig(z)), rel=1e-6)
        assert cr[i] == pytest.approx(beta * PC[i] / NC[i], rel=1e-6)
    # Changing the reference does not change SimPO.
    other = dpo_losses(*(mx.array(v) for v in (PC, PR, [0.0, 0.0], [5.0, 5.0], NC, NR)), loss="simpo",
                       beta=beta, simpo_gamma=gamma)
    assert np.allclose(np.array(other[0]), losses)


def test_stats_are_masked_sums_and_metrics_are_means():
    losses, cr, rr = (mx.array(v) for v in ([1.0, 3.0, 100.0], [0.5, -0.5, 9.0], [0.0, 0.0, 9.0]))
    stats = np.array(pair_stats(losses, cr, rr, mx.array([-1.0, -2.0, -3.0]), mx.array([-4.0, -5.0, -6.0]),
                                mx.array([1.0, 1.0, 0.0]))).tolist()
    m = stats_to_metrics(stats)
    assert m["loss"] == pytest.approx(2.0)
    assert m["rewards/accuracies"] == pytest.approx(0.5)  # per-pair fraction, filler row excluded
    assert m["rewards/margins"] == pytest.approx(0.0)
    assert m["logps/rejected"] == pytest.approx(-4.5)
    assert m["n_pairs"] == 2
