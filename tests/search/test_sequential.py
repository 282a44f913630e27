"""Sequential seeds: the procedure keeps its family-wise error at 5% whatever round it stops
at (simulated), resolves large effects early, and with one look is the paired t-test with Holm
that the report already uses."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as scipy_stats

from search import stats
from search.sequential import (
    Plan,
    Verdict,
    _boundary,
    _holm,
    next_round,
    sequential_verdicts,
    simulate,
)

PLAN = Plan(min_seeds=3, max_seeds=8)
NOISE = 0.01  # per-seed accuracy noise of a configuration: paired differences have 0.01 * sqrt 2


def test_no_effect_resolves_falsely_in_at_most_5_percent_of_studies() -> None:
    # 7 comparisons against one reference (correlated through it), looked at after every round
    sim = simulate(PLAN, [0.0] * 7, studies=10_000, noise=NOISE, rng_seed=1)
    assert sim.false_rate <= 0.05
    assert sim.false_rate >= 0.035  # the budget is spent, not lost to a miscalibration


def test_one_comparison_spends_its_level_and_no_more() -> None:
    # the calibration alone: the false rate is 5% within Monte Carlo error, at 99% confidence
    sim = simulate(PLAN, [0.0], studies=40_000, noise=NOISE, rng_seed=2)
    false = round(sim.false_rate * sim.studies)
    interval = scipy_stats.binomtest(false, sim.studies).proportion_ci(0.99)
    assert interval.low <= 0.05  # not above 5%
    assert interval.high >= 0.047  # and conservative by little (two Monte Carlo errors)


def test_with_a_min_effect_negligible_and_sign_verdicts_stay_within_5_percent() -> None:
    # three effects exactly at the min effect (the hardest to call "negligible" wrongly) and
    # four zero effects (the hardest to give a sign wrongly)
    plan = Plan(min_effect=0.01)
    sim = simulate(plan, [0.01] * 3 + [0.0] * 4, studies=10_000, noise=NOISE, rng_seed=3)
    assert sim.false_rate <= 0.05


def test_a_two_sd_effect_resolves_early_and_with_fewer_seeds_than_a_fixed_design() -> None:
    effect = 2 * NOISE * math.sqrt(2)  # two sds of a paired difference
    sim = simulate(PLAN, [effect] * 7, studies=2000, noise=NOISE)
    assert sim.early.mean() > 0.8  # resolved with fewer than max_seeds
    fixed = [
        n
        for n in range(PLAN.min_seeds, PLAN.max_seeds + 1)
        if simulate(Plan(n, n), [effect] * 7, studies=2000, noise=NOISE).resolved.mean()
        >= sim.resolved.mean()
    ]
    assert fixed, "no fixed design up to max_seeds resolves as many"
    assert sim.seeds.mean() < fixed[0] - 1


def test_one_look_is_the_paired_t_test_with_holm_of_the_report() -> None:
    rng = np.random.default_rng(5)
    differences = [list(rng.normal(mu, 0.01, 5)) for mu in [0, 0.003, 0.012, 0.025, 0.04, -0.03]]
    verdicts = sequential_verdicts(differences, Plan(min_seeds=5, max_seeds=5))
    effects = stats.effects(differences)
    assert any(v.resolved for v in verdicts) and not all(v.resolved for v in verdicts)
    for d, v, e in zip(differences, verdicts, effects, strict=True):
        assert v.p == pytest.approx(e.p)
        assert v.p_adjusted == pytest.approx(e.p_holm)
        assert v.resolved == (not e.within_noise)
        expected = stats.t_interval(d, 1 - v.level)
        assert (v.interval.low, v.interval.high) == pytest.approx((expected.low, expected.high))
        assert (v.p <= v.level) == v.resolved  # the level its own p had to meet
        if v.resolved:
            assert v.sign == np.sign(v.interval.mean)
            assert not v.interval.covers(0)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([0.001, 0.004, 0.01, 0.02, 0.03, 0.2, 1.0]), max_size=8))
def test_the_closed_test_with_one_hypothesis_is_holm(p: list[float]) -> None:
    x = np.array([p])
    level, adjusted = _holm(x, x, 0.05)
    assert adjusted[0].tolist() == pytest.approx(stats.holm(p))
    assert ((adjusted[0] <= 0.05) == (x[0] <= level[0])).all()


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(*[st.sampled_from([0.002, 0.008, 0.013, 0.02, 0.04, 0.3])] * 2),
        min_size=1,
        max_size=4,
    )
)
def test_the_closed_test_shortcut_matches_brute_force(pairs: list[tuple[float, float]]) -> None:
    # each comparison: "no difference" and "at least min effect", at most one of them true;
    # brute force: reject h when every consistent intersection holding h has a p <= alpha/|J|
    alpha, m = 0.05, len(pairs)
    p = np.array(pairs)
    hypotheses = [(i, j) for i in range(m) for j in range(2)]

    def rejected(h: tuple[int, int]) -> bool:
        for choice in itertools.product([None, 0, 1], repeat=m):
            J = [(i, j) for i, j in enumerate(choice) if j is not None]
            if h in J and min(p[i, j] for i, j in J) > alpha / len(J):
                return False
        return True

    fully = p.max(1)[None]
    for j in range(2):
        level, adjusted = _holm(p[None, :, j], fully, alpha)
        for i in range(m):
            assert rejected((i, j)) == (p[i, j] <= level[0, i]) == (adjusted[0, i] <= alpha)
    assert hypotheses  # every hypothesis was checked


def test_blurpool_of_issue_19_resolves_with_the_seeds_it_is_told_it_needs() -> None:
    # +4.1, +6.5, +5.0 points on three seeds, among 10 comparisons: open at 3 seeds
    rng = np.random.default_rng(0)
    others = [list(rng.normal(0, 0.014, 5)) for _ in range(9)]
    blur = [0.041, 0.065, 0.050, 0.048, 0.055]
    first = sequential_verdicts([blur[:3]] + [o[:3] for o in others], PLAN)[0]
    assert first.outcome == "open" and first.seeds_needed is not None
    assert first.interval.low < 0 < first.interval.high
    later = sequential_verdicts([blur[: first.seeds_needed], *others], PLAN)[0]
    assert later.outcome == "higher" and later.interval.low > 0
    assert later.seeds_needed is None


def test_a_tight_null_is_negligible_only_with_a_min_effect() -> None:
    d = [0.001, -0.002, 0.0005, 0.0015, -0.001, 0.0, 0.001, -0.0005]
    assert sequential_verdicts([d], PLAN)[0].outcome == "open"
    negligible = sequential_verdicts([d], Plan(min_effect=0.01))[0]
    assert negligible.outcome == "negligible"
    assert -0.01 < negligible.interval.low < negligible.interval.high < 0.01


def test_the_interval_decides_and_the_deciding_look_is_reported() -> None:
    # equal differences: no spread, the interval is the point; resolved at the first look
    v = sequential_verdicts([[0.01] * 5], PLAN)[0]
    assert (v.sign, v.n, v.interval.n) == (1, 5, 3)
    assert v.interval.low == v.interval.high == pytest.approx(0.01)
    zero = sequential_verdicts([[0.0] * 4], PLAN)[0]
    assert zero.outcome == "open" and zero.seeds_needed is None


def test_seeds_needed_grow_as_the_effect_shrinks_against_its_noise() -> None:
    noise = [0.01, -0.012, 0.004]
    needed = [
        sequential_verdicts([[mu + e for e in noise]], PLAN)[0].seeds_needed
        for mu in [0.03, 0.015, 0.008]
    ]
    assert needed[0] is not None and needed[0] < needed[1] < needed[2]
    assert sequential_verdicts([[0.01]], PLAN)[0].seeds_needed is None  # one seed: unknown


def test_next_round_grows_the_open_ones_and_the_reference_with_them() -> None:
    def verdict(n: int, sign: int) -> Verdict:
        interval = stats.Interval(0.0, -1.0, 1.0, n, 0.95)
        return Verdict(n, interval, 0.05, 1.0, 1.0, sign, False, None)

    plan = Plan(3, 5)
    assert next_round([verdict(3, 1), verdict(3, 0), verdict(5, 0)], plan).comparisons == (1,)
    assert next_round([verdict(3, 1), verdict(3, 0)], plan).reference
    done = next_round([verdict(4, -1), verdict(5, 0)], plan)
    assert done.comparisons == () and not done.reference


def test_the_boundary_inverts_its_p() -> None:
    boundary = _boundary(PLAN.min_seeds, PLAN.max_seeds)
    for level in [0.05, 0.05 / 7, 0.001]:
        a = boundary.nominal(level)
        assert boundary.p(np.array(a * 0.999)) <= level < boundary.p(np.array(a))
        assert a < level  # many looks: each looks at less than the whole level


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_seeds": 1}, "min seeds"),
        ({"min_seeds": 5, "max_seeds": 4}, "min seeds"),
        ({"max_seeds": 1000}, "max seeds"),
        ({"alpha": 0}, "alpha"),
        ({"min_effect": -0.01}, "min effect"),
    ],
)
def test_bad_plans_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Plan(**kwargs)


def test_bad_differences_are_refused() -> None:
    with pytest.raises(ValueError, match="at most 8"):
        sequential_verdicts([[0.0] * 9], PLAN)
    with pytest.raises(ValueError, match="finite"):
        sequential_verdicts([[0.0, math.nan, 0.1]], PLAN)
    assert sequential_verdicts([], PLAN) == []
