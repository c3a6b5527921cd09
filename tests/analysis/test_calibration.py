"""The committed calibration is the fit of the development corpus, and it is monotone in the evidence."""

import json

import pytest

from analysis import calibration, evaluate
from analysis.calibration import fit


def test_committed_parameters_are_the_fit_of_the_development_corpus():
    data = fit.pairs(evaluate.load_corpus())
    assert data and len(data) == json.loads(calibration.PARAMS_FILE.read_text())["findings"]
    fitted, committed = fit.fit(data), calibration.load()
    # stored to 4 decimals: another CPU's floating-point path may round the last digit the other way
    assert fitted.keys() == committed.keys() and fitted["causes"].keys() == committed["causes"].keys()
    for cause, params in committed["causes"].items():
        assert fitted["causes"][cause] == pytest.approx(params, abs=2e-4), cause
    for key in (k for k in committed if k != "causes"):
        assert fitted[key] == pytest.approx(committed[key], abs=2e-4), key


def test_runs_recorded_with_probes_are_fitted_in_both_views():
    development = [fx for fx in evaluate.load_corpus() if not fx.get("held_out")]
    curves_only = [{**fx, "probes": {}} for fx in development]
    probed = [fx for fx in development if fx.get("probes")]
    assert probed and len(fit.pairs(development)) > len(fit.pairs(curves_only))
    # the probes view of a run adds the findings that rest on its probe results (the confirmed `label_noise`)
    assert "label_noise" in {c for c, _, _ in fit.pairs(probed)} - {c for c, _, _ in fit.pairs(curves_only)}


def test_held_out_runs_are_never_fitted():
    held = [fx for fx in evaluate.load_corpus() if fx.get("held_out")]
    assert held and fit.pairs(held) == []


def test_a_stronger_score_is_never_a_lower_probability():
    for cause in calibration.PARAMS["causes"]:
        ps = [calibration.probability(cause, s) for s in (0.3, 0.5, 0.7, 0.9)]
        assert ps == sorted(ps), (cause, ps)
    assert calibration.probability("plateau", 0.42) == 0.42  # symptoms keep their score
