"""Where the numbers came from: the report's Provenance section. What the study recorded of
its environment at its first run (`search/provenance.py` records it) beside this report's,
where the trials ran, the data and space they ran on, and whether the test set was used."""

from __future__ import annotations

import optuna
import pandas as pd

from search import provenance
from search.report.document import Document
from search.study import StudyConfig


def provenance_section(
    doc: Document, study: optuna.Study, config: StudyConfig, frame: pd.DataFrame, tested: bool
) -> None:
    doc.heading("Provenance")
    recorded = study.user_attrs.get(provenance.ATTR)
    now = provenance.environment()
    doc.table(
        pd.DataFrame(
            {
                "": list(now),
                "run (recorded at the study's first run)": [
                    (recorded or {}).get(k, "not recorded") for k in now
                ],
                "this report": list(now.values()),
            }
        )
    )
    pairs = zip(frame["device"], frame["threads"], strict=True)
    devices = ", ".join(sorted({f"{d} x {t} thread{'' if t == 1 else 's'}" for d, t in pairs}))
    doc.text(
        f"Trials ran on: {devices}. Data split fingerprint (SHA-256 of the training and "
        f"validation images and labels): {(recorded or {}).get('split', 'not recorded')}. "
        f"Space hash: {provenance.space_hash(config.space_source)}; epochs "
        f"{config.epochs or 'as in the space'}; study seed {config.seed}."
    )
    doc.text(
        "Test set: used only for the test-accuracy column, after every selection; nothing was "
        "chosen on it."
        if tested
        else "Test set: not used. Every number is on the validation split."
    )
