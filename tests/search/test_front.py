"""The noise-aware Pareto front: the planted twin of issue 19 leaves it, trade-offs and ties
stay, and against a brute-force strict front it is a non-empty subset, equal without noise."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from search.front import latency_noise, noise_front, seed_noise, strict_front

ACC_BUDGET_LATENCY = ["maximize", "minimize", "minimize"]


def _noise(rows: list[tuple[float, float, float, float | None]]) -> np.ndarray:
    """Half-widths of (accuracy over one seed, budget, latency with its IQR) rows."""
    return np.array([[0.0, 0.0, latency_noise(lat, iqr)] for _, _, lat, iqr in rows])


@pytest.mark.parametrize("latency", ["in trial", "alone"])
def test_planted_twin_of_issue_19_leaves_the_front(latency: str) -> None:
    # trials 6 and 12 of the issue: 13.5 points apart, same budget, latency 1% apart
    ms = {"in trial": (0.0667, 0.0661), "alone": (0.0676, 0.0666)}[latency]
    rows = [(0.8438, 400, ms[0], None), (0.7083, 400, ms[1], None)]
    values = [r[:3] for r in rows]
    assert strict_front(values, ACC_BUDGET_LATENCY).tolist() == [True, True]
    assert noise_front(values, ACC_BUDGET_LATENCY, _noise(rows)).tolist() == [True, False]


def test_a_real_trade_off_stays() -> None:
    # 4 points more accurate against 40% faster, both far outside their noise
    rows = [(0.84, 400, 0.067, 0.002), (0.80, 400, 0.040, 0.001)]
    values = [r[:3] for r in rows]
    assert noise_front(values, ACC_BUDGET_LATENCY, _noise(rows)).tolist() == [True, True]


def test_seed_noise_keeps_a_difference_inside_it() -> None:
    # the same planted pair, but accuracy measured over 3 seeds that spread 10 points
    accuracy = {6: [0.90, 0.84, 0.79], 12: [0.76, 0.62, 0.745]}
    values = [(np.mean(accuracy[t]), 400, lat) for t, lat in [(6, 0.0667), (12, 0.0661)]]
    noise = [
        [seed_noise(accuracy[t]), 0, latency_noise(lat, None)]
        for t, lat in [(6, 0.0667), (12, 0.0661)]
    ]
    assert noise_front(values, ACC_BUDGET_LATENCY, noise).tolist() == [True, True]


def test_twins_within_noise_keep_each_other() -> None:
    # equal within noise on everything, neither better beyond it: ties keep both
    values = [(0.800, 400, 0.0667), (0.801, 400, 0.0670)]
    noise = [[0.005, 0, 0.002], [0.005, 0, 0.002]]
    assert noise_front(values, ACC_BUDGET_LATENCY, noise).tolist() == [True, True]


def test_a_cycle_of_beats_stays_and_what_it_beats_leaves() -> None:
    # a -> b -> c -> a: each beats the last by 1.1 on one objective at a cost of 0.55 on
    # the others, inside the combined noise of 1; d is beaten by a alone
    a, b, c, d = (0, 0, 0), (1.1, -0.55, -0.55), (0.55, 0.55, -1.1), (-1.2, 0.5, 0)
    values = [a, b, c, d]
    noise = np.full((4, 3), 1 / np.sqrt(2))
    assert strict_front(values, ["maximize"] * 3).all()
    assert noise_front(values, ["maximize"] * 3, noise).tolist() == [True, True, True, False]


def test_a_cycle_through_a_dominated_trial_keeps_the_rest_of_it() -> None:
    # a beats p beats q beats b within noise, and b Pareto-dominates a by 0.1 everywhere:
    # one cycle, so p, q, b stay (counting only noise, a alone would be unbeaten, and off the
    # strict front: nothing would stay); a, dominated, leaves
    a, p, q, b = (0, 0, 0), (-1.1, 0.6, 0.6), (-0.5, -0.5, 1.2), (0.1, 0.1, 0.1)
    noise = np.full((4, 3), 1 / np.sqrt(2))
    front = noise_front([a, p, q, b], ["maximize"] * 3, noise)
    assert front.tolist() == [False, True, True, True]


def test_pareto_dominance_counts_as_beating() -> None:
    # c beats a beyond noise; d (dominated by a, within noise) beats c. Counting dominance,
    # a -> d -> c -> a is one cycle and a, c stay; counting noise alone, d would be the only
    # unbeaten trial, and it is off the strict front: the front would be empty
    a, b, c, d = (3, 2), (1, 2), (4, 0), (2, 1)
    noise = [(0.5, 2), (0.5, 1), (0, 0), (2, 0.5)]
    front = noise_front([a, b, c, d], ["maximize"] * 2, noise)
    assert front.tolist() == [True, False, True, False]


def test_noise_helpers() -> None:
    assert latency_noise(0.0667, 0.0001) == pytest.approx(0.02 * 0.0667)  # the floor
    assert latency_noise(0.1, 0.03) == 0.03
    assert seed_noise([0.8]) == 0.0
    x = [0.80, 0.82, 0.81]
    assert seed_noise(x) == pytest.approx(4.302653 * np.std(x, ddof=1) / np.sqrt(3), rel=1e-6)


@pytest.mark.parametrize(
    ("values", "directions", "noise", "message"),
    [
        ([[1, 2]], ["maximize"], [[0, 0]], "shape"),
        ([[1]], ["upwards"], [[0]], "direction"),
        ([[np.nan]], ["maximize"], [[0]], "finite"),
        ([[1]], ["maximize"], [[-1]], "noise"),
        ([[1]], ["maximize"], [[0, 0]], "noise of shape"),
    ],
)
def test_bad_input_is_refused(values, directions, noise, message) -> None:
    with pytest.raises(ValueError, match=message):
        noise_front(values, directions, noise)


def _brute_strict(values: np.ndarray, directions: list[str]) -> list[bool]:
    sign = [1 if d == "maximize" else -1 for d in directions]

    def dominates(b, a) -> bool:
        pairs = [(s * x, s * y) for s, x, y in zip(sign, b, a, strict=True)]
        return all(x >= y for x, y in pairs) and any(x > y for x, y in pairs)

    return [not any(dominates(b, a) for b in values) for a in values]


@st.composite
def studies(draw, noisy: bool = True):
    """Trials on a coarse grid (so ties happen), 1-3 objectives, random directions."""
    k = draw(st.integers(1, 3))
    n = draw(st.integers(1, 12))
    values = np.array(
        draw(st.lists(st.lists(st.integers(0, 4), min_size=k, max_size=k), min_size=n, max_size=n)),
        dtype=float,
    )
    directions = draw(st.lists(st.sampled_from(["maximize", "minimize"]), min_size=k, max_size=k))
    noise = (
        np.array(
            draw(
                st.lists(
                    st.lists(st.sampled_from([0, 0.3, 0.7, 1.5]), min_size=k, max_size=k),
                    min_size=n,
                    max_size=n,
                )
            )
        )
        if noisy
        else np.zeros((n, k))
    )
    return values, directions, noise


@settings(max_examples=200, deadline=None)
@given(studies(noisy=False))
def test_without_noise_it_is_the_strict_front(study) -> None:
    values, directions, noise = study
    expected = _brute_strict(values, directions)
    assert strict_front(values, directions).tolist() == expected
    assert noise_front(values, directions, noise).tolist() == expected


@settings(max_examples=200, deadline=None)
@given(studies(), st.randoms(use_true_random=False))
def test_a_non_empty_subset_of_the_strict_front_in_any_order(study, random) -> None:
    values, directions, noise = study
    front = noise_front(values, directions, noise)
    assert front.any()
    assert not (front & ~np.array(_brute_strict(values, directions))).any()
    order = list(range(len(values)))
    random.shuffle(order)
    assert noise_front(values[order], directions, noise[order]).tolist() == front[order].tolist()
    # identical trials share their fate
    for i, j in itertools.combinations(range(len(values)), 2):
        if (values[i] == values[j]).all() and (noise[i] == noise[j]).all():
            assert front[i] == front[j]
