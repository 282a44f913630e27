"""Registry, hyperparameters and rules; the batch, schedule and inference techniques against
their formulas."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from trainer.measure import count_flops, count_params
from trainer.schedule import base_factor, warmup_steps
from trainer.spec import ArchSpec, StageSpec
from trainer.techniques import REGISTRY, Technique, build, rules
from trainer.techniques.base import (
    SLOT_AFTER_STEP,
    SLOT_ARCH,
    SLOT_AVERAGING,
    SLOT_BATCH,
    SLOT_FINALIZE,
    SLOT_INFERENCE,
    SLOT_SCHEDULE,
    SLOT_STEP,
    deployed,
)
from trainer.techniques.cutout import Cutout, cutout_batch
from trainer.techniques.label_smoothing import LabelSmoothing, smooth_labels
from trainer.techniques.mixup import Mixup, mixup_batch, sample_lambda
from trainer.techniques.sam import SAM
from trainer.techniques.tta_flip import FlipTTA

K = 10


def one_hot(labels: list[int]) -> torch.Tensor:
    return F.one_hot(torch.tensor(labels), K).float()


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# -- registry, hyperparameters, rules ---------------------------------------------------


def test_registry_holds_the_papers_ten_and_what_came_after_under_their_names() -> None:
    paper = {"depthwise", "gap", "blurpool", "se", "cutout", "mixup", "label_smoothing"}
    paper |= {"sam", "one_cycle", "swa"}
    later = {"ema", "tta_flip", "inverted_bottleneck", "residual", "late_downsample"}
    assert set(REGISTRY) == paper | later
    for name, cls in REGISTRY.items():
        assert cls.name == name
        assert cls.kind in ("architecture", "training", "inference")
        assert cls.summary and "\n" not in cls.summary


@pytest.mark.parametrize("cls", REGISTRY.values(), ids=REGISTRY.keys())
def test_defaults_lie_in_their_ranges(cls: type[Technique]) -> None:
    for hyper in cls.hypers:
        assert hyper.check(hyper.default) == hyper.default
    assert cls().params == {h.name: h.default for h in cls.hypers}


# The slots each technique fills: one job each, an averager's two slots being one job.
SLOTS = {
    "depthwise": {SLOT_ARCH},
    "gap": {SLOT_ARCH},
    "blurpool": {SLOT_ARCH},
    "se": {SLOT_ARCH},
    "cutout": {SLOT_BATCH},
    "mixup": {SLOT_BATCH},
    "label_smoothing": {SLOT_BATCH},
    "sam": {SLOT_STEP},
    "one_cycle": {SLOT_SCHEDULE},
    "swa": {SLOT_AVERAGING, SLOT_FINALIZE},
    "ema": {SLOT_AFTER_STEP, SLOT_FINALIZE},
    "tta_flip": {SLOT_INFERENCE},
}
KIND_SLOTS = {
    "architecture": {SLOT_ARCH},
    "training": {SLOT_BATCH, SLOT_STEP, SLOT_SCHEDULE, SLOT_AVERAGING, SLOT_AFTER_STEP},
    "inference": {SLOT_INFERENCE},
}


@pytest.mark.parametrize("cls", REGISTRY.values(), ids=REGISTRY.keys())
def test_each_technique_fills_only_the_slots_of_its_kind(cls: type[Technique]) -> None:
    every = {s for slots in SLOTS.values() for s in slots}
    filled = {slot for slot in every if cls.fills(slot)}
    assert filled == SLOTS[cls.name]
    assert filled - {SLOT_FINALIZE} <= KIND_SLOTS[cls.kind]


def test_batch_order_cutout_then_mixup_then_label_smoothing() -> None:
    assert Cutout.batch_order < Mixup.batch_order < LabelSmoothing.batch_order


def test_build_returns_configured_techniques_in_registry_order() -> None:
    built = build({"swa": {}, "mixup": {"alpha": 0.2}, "cutout": {"size": 12}})
    assert [t.name for t in built] == ["cutout", "mixup", "swa"]
    assert built[0].params == {"size": 12, "p": 1.0}
    assert built[1].params == {"alpha": 0.2}


def test_unknown_technique_lists_accepted_names() -> None:
    with pytest.raises(ValueError, match=r"unknown technique.*mixupp.*accepted: depthwise, gap"):
        build({"mixupp": {}})


def test_unknown_hyper_lists_accepted_hypers() -> None:
    with pytest.raises(
        ValueError, match=r"sam: unknown hyperparameter.*radius; accepted: adaptive, rho"
    ):
        build({"sam": {"radius": 0.1}})


@pytest.mark.parametrize(
    ("name", "params", "expected"),
    [
        ("label_smoothing", {"eps": 0.5}, r"eps = 0.5: expected number in \[0.05, 0.3\]"),
        ("cutout", {"size": 8.5}, r"size = 8.5: expected integer in \[2, 20\]"),
        ("depthwise", {"kernel": 7}, "kernel = 7: expected one of 3, 5"),
        ("inverted_bottleneck", {"expansion": 1}, r"expansion = 1: expected integer in \[2, 6\]"),
        ("inverted_bottleneck", {"activation": "gelu"}, "activation = 'gelu': expected one of"),
        ("sam", {"adaptive": 1}, "adaptive = 1: expected one of False, True"),
        ("mixup", {"alpha": float("nan")}, "alpha = nan: expected number"),
    ],
)
def test_out_of_range_values_name_what_is_accepted(
    name: str, params: dict[str, object], expected: str
) -> None:
    required = {r: {} for r in rules.requirements(name)}
    with pytest.raises(ValueError, match=expected):
        build({**required, name: params})  # type: ignore[dict-item]


def test_rules_name_registered_pairs_once() -> None:
    pairs = [frozenset(rule.techniques) for rule in rules.RULES]
    assert len(pairs) == len(set(pairs))
    for rule in rules.RULES:
        assert set(rule.techniques) <= set(REGISTRY)
        assert rule.decision and rule.reason
    assert {frozenset(("swa", "one_cycle")), frozenset(("sam", "mixup"))} <= set(pairs)


def test_rules_for_lists_the_rules_of_a_technique() -> None:
    swa_rules = rules.rules_for("swa")
    assert swa_rules and all("swa" in rule.techniques for rule in swa_rules)
    assert rules.rules_for("gap") == ()


def test_a_technique_that_requires_another_is_refused_without_it() -> None:
    assert rules.requirements("inverted_bottleneck") == ("depthwise",)
    assert rules.requirements("depthwise") == ()
    rules.check({"depthwise", "inverted_bottleneck"})
    rules.check({"depthwise"})
    with pytest.raises(ValueError, match="inverted_bottleneck needs depthwise on: An inverted"):
        rules.check({"inverted_bottleneck", "gap"})
    with pytest.raises(ValueError, match="inverted_bottleneck needs depthwise on"):
        build({"inverted_bottleneck": {}})
    assert [t.name for t in build({"inverted_bottleneck": {}, "depthwise": {}})] == [
        "depthwise",
        "inverted_bottleneck",
    ]


def test_check_rejects_an_exclusive_pair_only_when_both_are_on() -> None:
    exclusive = (rules.Rule(("sam", "mixup"), "exclusive", "pick one", "for the test"),)
    rules.check({"sam", "cutout"}, exclusive)
    with pytest.raises(ValueError, match="sam and mixup may not both be on: for the test"):
        rules.check({"sam", "mixup", "gap"}, exclusive)
    with pytest.raises(ValueError, match="kind"):
        rules.Rule(("sam", "mixup"), "maybe", "", "")  # type: ignore[arg-type]


def test_one_averager_ema_and_swa_are_refused_together_by_rule_and_by_slot(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (rule,) = (r for r in rules.RULES if set(r.techniques) == {"ema", "swa"})
    assert rule.kind == "exclusive"
    with pytest.raises(ValueError, match="ema and swa may not both be on: Both are averagers"):
        build({"swa": {}, "ema": {}})
    monkeypatch.setattr(rules, "check", lambda names: None)  # the slot refuses them too
    with pytest.raises(ValueError, match="swa and ema both fill the 'finalize' slot"):
        build({"swa": {}, "ema": {}})


def test_build_rejects_two_owners_of_one_slot(monkeypatch: pytest.MonkeyPatch) -> None:
    class OtherStep(Technique):
        name = "other_step"
        kind = "training"
        summary = "a second step owner"

        def step(self, model, loss_fn, x, targets, optimizer):  # type: ignore[no-untyped-def]
            raise AssertionError

    monkeypatch.setitem(REGISTRY, "other_step", OtherStep)
    with pytest.raises(ValueError, match="sam and other_step both fill the 'step' slot"):
        build({"sam": {}, "other_step": {}})


# -- architecture techniques ------------------------------------------------------------

ARCH = ArchSpec(stages=(StageSpec(8), StageSpec(16)))


@pytest.mark.parametrize(
    ("name", "params", "changes"),
    [
        ("depthwise", {"kernel": 5, "first_stage": 1}, {"separable_from": 1, "kernel": 5}),
        ("depthwise", {}, {"separable_from": 0, "kernel": 3}),
        ("gap", {}, {"head": "gap"}),
        ("blurpool", {"size": 4}, {"blur": 4}),
        ("se", {"ratio": 0.125}, {"se_ratio": 0.125}),
        ("inverted_bottleneck", {}, {"expansion": 6, "bottleneck_act": "relu6"}),
        (
            "inverted_bottleneck",
            {"expansion": 2, "activation": "relu"},
            {"expansion": 2, "bottleneck_act": "relu"},
        ),
        ("residual", {}, {"residual": True}),
        ("late_downsample", {}, {"late_downsample": True}),
    ],
)
def test_architecture_techniques_set_their_fields_only(
    name: str, params: dict[str, object], changes: dict[str, object]
) -> None:
    technique = REGISTRY[name](**params)  # type: ignore[arg-type]
    arch = technique.configure_arch(ARCH)
    assert {k: getattr(arch, k) for k in changes} == changes
    assert arch.stages == ARCH.stages and arch.stem_channels == ARCH.stem_channels


# -- label smoothing, mixup, cutout -----------------------------------------------------


def test_smoothed_target_is_standard_form_and_sums_to_one() -> None:
    targets = one_hot([3, 0])
    smoothed = smooth_labels(targets, 0.1)
    assert smoothed[0, 3].item() == pytest.approx(0.9 + 0.1 / K)
    assert smoothed[0, 0].item() == pytest.approx(0.1 / K)  # eps / K, not eps / (K - 1)
    torch.testing.assert_close(smoothed.sum(1), torch.ones(2))
    # Same target as PyTorch's own label smoothing: equal losses.
    logits = torch.randn(2, K, generator=gen())
    torch.testing.assert_close(
        F.cross_entropy(logits, smoothed),
        F.cross_entropy(logits, torch.tensor([3, 0]), label_smoothing=0.1),
    )


def test_mixup_batch_formula_and_lambda_one_changes_nothing() -> None:
    x = torch.randn(4, 1, 5, 5, generator=gen())
    targets = one_hot([0, 1, 2, 3])
    perm = torch.tensor([2, 0, 3, 1])
    mixed_x, mixed_t = mixup_batch(x, targets, 0.7, perm)
    torch.testing.assert_close(mixed_x, 0.7 * x + 0.3 * x[perm])
    torch.testing.assert_close(mixed_t[0], torch.tensor([0.7, 0, 0.3] + [0.0] * 7))
    same_x, same_t = mixup_batch(x, targets, 1.0, perm)
    torch.testing.assert_close(same_x, x)
    torch.testing.assert_close(same_t, targets)


def test_mixup_lambda_is_beta_distributed_and_reproducible() -> None:
    g = gen(1)
    draws = torch.tensor([sample_lambda(0.5, g) for _ in range(2000)])
    assert ((draws >= 0) & (draws <= 1)).all()
    assert draws.mean().item() == pytest.approx(0.5, abs=0.03)
    assert draws.var().item() == pytest.approx(1 / 8, abs=0.01)  # Beta(a, a): 1 / (4(2a + 1))
    x, targets = torch.randn(8, 1, 4, 4, generator=gen()), one_hot(list(range(8)))
    a, b = Mixup().batch(x, targets, gen(5)), Mixup().batch(x, targets, gen(5))
    torch.testing.assert_close(a, b)
    assert not torch.equal(a[0], x)


def test_mixup_then_label_smoothing_smooths_once() -> None:
    x, targets = torch.randn(8, 1, 4, 4, generator=gen()), one_hot(list(range(8)))
    mixed_x, mixed_t = Mixup().batch(x, targets, gen(3))
    techniques = build({"label_smoothing": {"eps": 0.2}, "mixup": {}})
    assert [t.name for t in techniques] == ["mixup", "label_smoothing"]
    out_x, out_t = x, targets
    for technique in techniques:
        out_x, out_t = technique.batch(out_x, out_t, gen(3))
    torch.testing.assert_close(out_x, mixed_x)
    torch.testing.assert_close(out_t, 0.8 * mixed_t + 0.2 / K)
    torch.testing.assert_close(out_t.sum(1), torch.ones(8))


def holes(x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Per-image count of pixels zeroed (over all channels at once)."""
    return ((out == 0) & (x != 0)).all(1).sum((1, 2))


@pytest.mark.parametrize("size", [2, 5, 8])
def test_cutout_zeroes_one_square_of_the_given_side(size: int) -> None:
    x = torch.rand(3, 2, 16, 16) + 1  # no zeros of its own
    cy, cx = torch.tensor([8, 0, 15]), torch.tensor([7, 0, 6])
    out = cutout_batch(x, size, cy, cx, torch.tensor([True, True, False]))
    clipped = size - size // 2  # centre at the corner: only rows/cols >= centre survive
    assert holes(x, out).tolist() == [size * size, clipped * clipped, 0]
    # Exactly the square [c - size // 2, c - size // 2 + size) in the interior case.
    top, left = 8 - size // 2, 7 - size // 2
    assert (out[0, :, top : top + size, left : left + size] == 0).all()
    assert (out == 0).sum() == 2 * (size * size + clipped * clipped)
    torch.testing.assert_close(out[2], x[2])


def test_cutout_hole_larger_than_image_is_clipped() -> None:
    x = torch.rand(1, 1, 8, 8) + 1
    out = cutout_batch(x, 20, torch.tensor([4]), torch.tensor([4]), torch.tensor([True]))
    assert (out == 0).all()


def test_cutout_technique_probability() -> None:
    x, targets = torch.rand(64, 1, 12, 12) + 1, one_hot([0] * 64)
    out, out_t = Cutout(size=4, p=1.0).batch(x, targets, gen())
    counts = holes(x, out)
    assert ((counts > 0) & (counts <= 16)).all()  # one hole each, some clipped at borders
    torch.testing.assert_close(out_t, targets)
    half = holes(x, Cutout(size=4, p=0.5).batch(x, targets, gen())[0])
    assert 16 < (half > 0).sum().item() < 48


def test_on_means_on_cutout_p_is_the_papers_1_and_smoothing_at_least_005() -> None:
    assert Cutout().params["p"] == 1.0
    (p,) = (h for h in Cutout.hypers if h.name == "p")
    assert not p.searched and p.low >= 0.5
    (eps,) = LabelSmoothing.hypers
    assert eps.low >= 0.05


def test_sam_rho_range_and_default_follow_adaptive() -> None:
    assert SAM().params == {"adaptive": False, "rho": 0.05}
    assert SAM(adaptive=True).params == {"adaptive": True, "rho": 0.5}
    SAM(adaptive=True, rho=2.0)
    with pytest.raises(ValueError, match=r"rho = 0.5: expected number in \[0.01, 0.2\]"):
        SAM(rho=0.5)
    with pytest.raises(ValueError, match=r"rho = 0.05: expected number in \[0.1, 2\]"):
        SAM(adaptive=True, rho=0.05)


# -- one-cycle ---------------------------------------------------------------------------


def test_one_cycle_peaks_at_max_lr_and_ends_near_zero() -> None:
    total, max_lr, pct = 100, 0.4, 0.3
    (technique,) = build({"one_cycle": {"max_lr": max_lr, "pct_start": pct}})
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.05, momentum=0.9)
    scheduler = technique.make_scheduler(optimizer, total)
    lrs = []
    for _ in range(total):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[0] == pytest.approx(max_lr / 25)
    peak = max(range(total), key=lrs.__getitem__)
    assert peak == round(pct * total) - 1  # the (pct * total)-th step, counted from 1
    assert lrs[peak] == pytest.approx(max_lr)
    assert lrs[-1] == pytest.approx(max_lr / (25 * 1e4))
    with pytest.raises(ValueError, match="number of total steps is 100"):
        scheduler.step()


# -- warm-up of the base schedule --------------------------------------------------------


@pytest.mark.parametrize("schedule", ["cosine", "constant"])
def test_warm_up_rises_linearly_to_lr_then_runs_the_schedule_over_the_rest(schedule: str) -> None:
    total, warmup = 20, 4
    factors = [base_factor(schedule, t, total, warmup) for t in range(total + 1)]
    assert factors[:warmup] == pytest.approx([0.2, 0.4, 0.6, 0.8])  # (t + 1) / (4 + 1)
    rest = [base_factor(schedule, t, total - warmup, 0) for t in range(total - warmup + 1)]
    assert factors[warmup:] == rest  # the schedule, shifted, over the 16 steps after it
    assert factors[warmup] == 1.0
    if schedule == "cosine":
        assert factors[-1] == pytest.approx(0.0)


def test_without_warm_up_the_cosine_is_the_closed_form_as_before() -> None:
    total = 16
    assert [base_factor("cosine", t, total, 0) for t in range(total + 1)] == [
        0.5 * (1.0 + math.cos(math.pi * min(t, total) / total)) for t in range(total + 1)
    ]


def test_warm_up_steps_are_a_rounded_fraction_of_at_most_half() -> None:
    assert warmup_steps(0.0, 100) == 0
    assert warmup_steps(0.05, 90) == 4  # Goyal et al.: 5 of 90 epochs
    assert warmup_steps(0.5, 3) == 2  # one step of the schedule remains
    with pytest.raises(ValueError, match=r"warmup_fraction = 0.6: expected a value in \[0, 0.5\]"):
        warmup_steps(0.6, 10)


# -- flip test-time augmentation ---------------------------------------------------------


def test_flip_tta_averages_the_logits_of_the_image_and_its_mirror() -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3),
        torch.nn.BatchNorm2d(4),
        torch.nn.Flatten(),
        torch.nn.Linear(4 * 6 * 6, K),
    ).eval()
    x = torch.randn(5, 3, 8, 8, generator=gen())
    (technique,) = build({"tta_flip": {}})
    served = deployed(net, [technique])
    assert isinstance(served, FlipTTA) and served.net is net
    with torch.no_grad():
        torch.testing.assert_close(served(x), (net(x) + net(x.flip(-1))) / 2)
        assert not torch.allclose(served(x), net(x))  # a mirror is another image
    assert count_params(served) == count_params(net)  # no weights of its own
    assert count_flops(served, (3, 8, 8)) == 2 * count_flops(net, (3, 8, 8))
    assert deployed(net, build({"ema": {}})) is net  # no inference technique: the net itself
