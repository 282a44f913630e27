"""The report's hypervolume on fronts worked out by hand. Optuna's exact algorithm is private
API (`optuna._hypervolume`, behind `search.report.hypervolume.hypervolume`): these pin what
the report gets from it, so an Optuna upgrade that changes or removes it fails here."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from search.report.document import Document
from search.report.hypervolume import (
    hypervolume,
    hypervolume_history,
    hypervolume_section,
    reference_point,
)

MINIMISED_2D = ["params", "latency_ms"]
MINIMISED_3D = ["budget", "params", "latency_ms"]


def test_a_two_dimensional_staircase() -> None:
    # The boxes from (1, 3), (2, 2), (3, 1) up to (4, 4), column by column: 1 + 2 + 3.
    points = np.array([[1, 3], [2, 2], [3, 1]])
    assert hypervolume(points, MINIMISED_2D, [4.0, 4.0]) == pytest.approx(6.0)


def test_a_three_dimensional_front() -> None:
    # Three boxes of 3 x 1 x 1 up to (4, 4, 4), each pair and all three meeting in the one
    # cube from (3, 3, 3): 3 * 3 - 3 * 1 + 1 (inclusion-exclusion).
    front = [[1, 3, 3], [3, 1, 3], [3, 3, 1]]
    assert hypervolume(np.array(front), MINIMISED_3D, [4.0] * 3) == pytest.approx(7.0)
    # A dominated point and one past the reference add nothing.
    more = np.array([*front, [2, 3, 3], [0, 0, 5]])
    assert hypervolume(more, MINIMISED_3D, [4.0] * 3) == pytest.approx(7.0)


def test_maximised_accuracy_is_measured_up_from_its_reference() -> None:
    # (accuracy, latency) against (0, 4): the staircase above, mirrored in accuracy. A
    # dominated point, one slower than the reference and one below accuracy 0 add nothing.
    points = np.array([[1, 1], [2, 2], [3, 3], [1, 2], [9, 5], [-1, 0]])
    assert hypervolume(points, ["accuracy", "latency_ms"], [0.0, 4.0]) == pytest.approx(6.0)
    # The three objectives of a searched budget: boxes of 3 x 1 x 1 in each direction.
    points = np.array([[3, 3, 3], [1, 1, 3], [1, 3, 1]])
    objectives = ["accuracy", "budget", "latency_ms"]
    assert hypervolume(points, objectives, [0.0, 4.0, 4.0]) == pytest.approx(7.0)


def test_nothing_inside_the_reference_has_no_volume() -> None:
    assert hypervolume(np.array([[5.0, 5.0]]), MINIMISED_2D, [4.0, 4.0]) == 0.0
    assert hypervolume(np.empty((0, 2)), MINIMISED_2D, [4.0, 4.0]) == 0.0


# Trials out of number order. Reference: accuracy 0, latency 1.1 x 2.0 = 2.2. Trial 0 alone:
# 0.5 x 1.2 = 0.6; trial 1 adds 0.8 x 0.2 less the 0.5 x 0.2 shared = 0.06; trial 2 is
# dominated by trial 0.
TRIALS = pd.DataFrame(
    {"number": [2, 0, 1], "accuracy": [0.4, 0.5, 0.8], "latency_ms": [1.5, 1.0, 2.0]}
)


def test_the_history_grows_in_trial_order_against_the_stated_reference() -> None:
    objectives = ["accuracy", "latency_ms"]
    assert reference_point(TRIALS, objectives) == pytest.approx([0.0, 2.2])
    assert hypervolume_history(TRIALS, objectives) == pytest.approx([0.6, 0.66, 0.66])


def test_the_section_states_the_reference_point_and_the_final_volume() -> None:
    doc = Document("t")
    hypervolume_section(doc, TRIALS, ["accuracy", "latency_ms"])
    markdown = doc.markdown()
    assert "## Hypervolume" in markdown
    assert "reference point {'accuracy': 0.0, 'latency_ms': 2.2" in markdown
    assert "final 0.66." in markdown
    assert [f.name for f in doc.figures] == ["hypervolume.png"]
