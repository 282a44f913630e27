"""`search report`: a study as a document, report.md and a self-contained report.html, with
PNG figures.

An ablation study (`search ablate`) gets the paper's table: per configuration, accuracy over
its seeds, and its paired difference to the reference with Holm-corrected intervals
(`search/stats.py`). A search study (`search run`) gets its Pareto front, hypervolume,
the importance of each searched parameter, each switch's marginal effect and, when the
recipe is searched, accuracy by recipe value. Both say where the numbers came from.

Reading a study writes nothing to its storage. The test set is read only with `--test`, and
only to add a column: every selection and every difference uses the validation accuracy.

The package: `document` (the document and its two renderings), `formats` (how a statistic
is written), `trials` (the trials as a table), `ablation`, `searches` and `hypervolume` (the
sections of each kind of study), `origin` (the provenance section); here, the whole report
and the writing of its files.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import optuna

from search import seeds
from search.report.ablation import ablation_sections
from search.report.document import Document
from search.report.origin import provenance_section
from search.report.rungs import rung_sections
from search.report.searches import search_sections
from search.report.trials import others, trials_frame
from search.study import StudyConfig
from trainer.atomic import write_atomic

__all__ = ["Document", "build", "trials_frame", "write"]


def build(
    study: optuna.Study,
    config: StudyConfig,
    test_accuracy: Callable[[int], float] | None = None,
    *,
    strict_front: bool = False,
) -> Document:
    """The report of `study`; `test_accuracy(trial number)` adds the test column (of every
    trial of a design, else of the front's); `strict_front`: a search's front is Optuna's
    strict one, not the noise-aware front of configurations."""
    frame = trials_frame(study, config)
    space = config.space()
    doc = Document(f"Study {study.study_name}: {space.name}")
    if frame.empty:
        doc.text("No complete trials yet.")
        return doc
    design = study.user_attrs.get("ablation")
    if test_accuracy is not None:
        front = frame["pareto" if strict_front else "front"]
        numbers = frame["number"] if design else frame.loc[front, "number"]
        frame.loc[numbers.index, "test_accuracy"] = [test_accuracy(int(n)) for n in numbers]
    trials = study.get_trials(deepcopy=False)
    left_out = "; ".join(f"{why} {n}" for why, n in others(trials).items())
    doc.text(
        f"{len(frame)} complete trials of {len(trials)}"
        + (f" (the others: {left_out})" if left_out else "")
        + f"; objectives {', '.join(space.objectives)}; accuracy on the validation split."
    )
    if design:
        ablation_sections(doc, frame, design, seeds.plan(config))
    else:
        search_sections(doc, study, frame, list(space.objectives), strict_front)
        rung_sections(doc, study, space)
    provenance_section(doc, study, config, frame, test_accuracy is not None)
    return doc


def write(doc: Document, directory: Path) -> list[Path]:
    """Write report.md, report.html and the figures into `directory`; each file whole."""
    files = {f.name: f.png for f in doc.figures}
    files["report.md"] = doc.markdown().encode()
    files["report.html"] = doc.html().encode()
    written = []
    for name, data in files.items():
        path = directory / name
        write_atomic(path, lambda partial, data=data: partial.write_bytes(data))
        written.append(path)
    return written
