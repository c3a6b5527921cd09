"""Rule tests check each rule's evidence score; the calibrated probabilities are checked by the corpus tests."""

import pytest

from analysis import calibration

CALIBRATED = {"test_corpus", "test_corpus_mutations", "test_calibration"}


@pytest.fixture(autouse=True)
def _evidence_scores(request, monkeypatch):
    if request.module.__name__.rsplit(".", 1)[-1] not in CALIBRATED:
        monkeypatch.setattr(calibration, "PARAMS", {})
