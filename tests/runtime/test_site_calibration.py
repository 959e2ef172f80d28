"""Site calibration's maths: the formula, the fit (towards the truth, shrunk for few films, neutral for a class not
shown, a temperature only with enough films), and cross-validation that never scores a film with a fit that saw it."""

import math

import numpy as np
import pytest

from runtime import site_calibration as sc
from runtime.site_profile import apply_profile

CARD = {"name": "test-model", "version": "1.0", "classes": ["COVID-19", "Normal", "Pneumonia"], "temperature": 1.5,
        "uncertainty": {"rule": {"kind": "top_probability_below", "threshold": 0.6}, "target_accuracy": 0.9,
                        "min_support": 10, "target_reached": True}}
SHIFT = np.array([2.0, 0.0, -2.0])  # what a site's films do to the logits; mean 0, so the prior does not fight it


def site_films(n: int, seed: int, shift=SHIFT, t_true: float = 1.0, classes=(0, 1, 2)):
    """Logits as the model gives them at a site that lowers each class's logit by `shift`: the labels follow
    softmax((logits + shift) / (T * t_true)), so the offsets that calibrate the site are `shift`."""
    rng = np.random.default_rng(seed)
    clean = rng.normal(0, 2.5, (n, 3))
    clean[:, [k for k in range(3) if k not in classes]] -= 50  # classes the site never shows
    u = clean / (CARD["temperature"] * t_true)
    p = np.exp(u - u.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    labels = np.array([rng.choice(3, p=row) for row in p])
    return clean - shift, labels


def test_apply_profile_by_hand():
    profile = {"parameters": {"offsets": [0.5, -0.5, 0.0], "temperature": 1.5}}
    card = {"temperature": 2.0}
    # (1 + 0.5, 2 - 0.5, 3 + 0) / (2 * 1.5) = (0.5, 0.5, 1.0)
    e = [math.exp(0.5), math.exp(0.5), math.exp(1.0)]
    expected = [v / sum(e) for v in e]
    np.testing.assert_allclose(apply_profile([1.0, 2.0, 3.0], profile, card), expected, rtol=0, atol=1e-15)
    # zero logits: (0.5, -0.5, 0) / 3
    zero = [math.exp(1 / 6), math.exp(-1 / 6), 1.0]
    np.testing.assert_allclose(apply_profile([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]], profile, card),
                               [expected, [v / sum(zero) for v in zero]], rtol=0, atol=1e-15)
    np.testing.assert_allclose(apply_profile([1000.0, 0.0, 0.0], profile, card), [1, 0, 0], atol=1e-100)  # no overflow
    assert apply_profile([1.0, 2.0, 3.0], profile, card).dtype == np.float64


def test_offsets_converge_to_the_site_shift_with_many_films():
    logits, labels = site_films(4000, seed=0)
    offsets, t, fitted = sc.fit_parameters(logits, labels, CARD["temperature"], fit_temperature=True)
    np.testing.assert_allclose(offsets, SHIFT, atol=0.2)
    assert t == pytest.approx(1.0, abs=0.08)
    assert fitted == [0, 1, 2]


def test_ten_films_move_the_offsets_part_of_the_way():
    fits = [sc.fit_parameters(*site_films(10, seed), CARD["temperature"], fit_temperature=False)[0]
            for seed in range(40)]
    mean = np.mean(fits, 0)
    # towards the shift, not all the way: the prior holds back what ten films alone would say
    assert 0.2 * SHIFT[0] < mean[0] < 0.8 * SHIFT[0]
    assert 0.8 * SHIFT[2] < mean[2] < 0.2 * SHIFT[2]
    hundred = sc.fit_parameters(*site_films(100, 0), CARD["temperature"], fit_temperature=False)[0]
    assert np.abs(hundred - SHIFT).max() < np.abs(mean - SHIFT).max()


def test_a_class_the_site_did_not_show_keeps_a_neutral_offset():
    logits, labels = site_films(40, seed=1, classes=(0, 1))
    assert set(labels.tolist()) == {0, 1}
    offsets, _, fitted = sc.fit_parameters(logits, labels, CARD["temperature"], fit_temperature=True)
    assert offsets[2] == 0.0 and fitted == [0, 1]
    assert sc.fit(logits, labels, np.zeros(40, bool), CARD).offsets[2] == 0.0


def penalised_nll(params, logits, labels, free, fit_t, T):
    """The objective of docs/site.md, written out here: sum of -log p[y] + 1/2 sum (b/T)^2 + 30/2 (log t)^2."""
    b = np.zeros(3)
    b[free] = params[: len(free)]
    s = params[-1] if fit_t else 0.0
    total = 0.0
    for z, y in zip(logits, labels):
        u = [(z[k] + b[k]) / (T * math.exp(s)) for k in range(3)]
        total -= u[y] - math.log(sum(math.exp(v) for v in u))
    return total + 0.5 * sum((v / T) ** 2 for v in b) + 15.0 * s**2


def test_the_fit_is_the_minimum_of_the_stated_objective():
    assert (sc.OFFSET_PRIOR, sc.TEMPERATURE_PRIOR) == (1.0, 30.0)  # as penalised_nll writes them
    logits, labels = site_films(60, seed=2, t_true=1.6)
    offsets, t, free = sc.fit_parameters(logits, labels, CARD["temperature"], fit_temperature=True)
    best = np.append(offsets[free], math.log(t))
    value = penalised_nll(best, logits, labels, free, True, CARD["temperature"])
    for i in range(len(best)):
        for step in (-1e-3, 1e-3):
            moved = best.copy()
            moved[i] += step
            assert penalised_nll(moved, logits, labels, free, True, CARD["temperature"]) > value


def test_a_temperature_only_with_enough_films_of_two_classes():
    logits, labels = site_films(29, seed=3, t_true=2.0)
    assert sc.fit(logits, labels, np.zeros(29, bool), CARD).temperature == 1.0
    logits, labels = site_films(30, seed=3, t_true=2.0)
    assert sc.fit(logits, labels, np.zeros(30, bool), CARD).temperature != 1.0
    one_class = np.zeros(40, int)
    assert sc.fit(np.random.default_rng(0).normal(size=(40, 3)), one_class, np.zeros(40, bool), CARD).temperature == 1
    logits, labels = site_films(3000, seed=4, shift=np.zeros(3), t_true=2.0)
    assert sc.fit(logits, labels, np.zeros(3000, bool), CARD).temperature == pytest.approx(2.0, rel=0.1)


def test_the_band_is_chosen_at_the_site_only_with_enough_films():
    logits, labels = site_films(49, seed=5)
    calibration = sc.fit(logits, labels, np.zeros(49, bool), CARD)
    assert calibration.band["chosen_on"] == "model" and calibration.band["rule"] == CARD["uncertainty"]["rule"]
    logits, labels = site_films(120, seed=5)
    calibration = sc.fit(logits, labels, np.zeros(120, bool), CARD)
    assert calibration.band["chosen_on"] == "site" and calibration.band["films"] == 120
    # films outside the rule's reach (no class given, or unlike the training films) do not count towards it
    outside = np.arange(120) < 71
    assert sc.fit(logits, labels, outside, CARD).band["chosen_on"] == "model"


def test_cross_validation_scores_each_film_with_a_fit_that_never_saw_its_patient():
    logits, labels = site_films(80, seed=6)
    patients = np.array([f"p{i // 2}" for i in range(80)])  # two films per patient
    calls = []

    def watch(z, y, outside, card):
        """`fit`, noting which films it was given (every film's logits are distinct)."""
        calls.append([int(np.flatnonzero((logits == row).all(1))[0]) for row in z])
        return sc.fit(z, y, outside, card)

    checked = sc.cross_validate(logits, labels, patients, np.zeros(80, bool), CARD, seed=0, fit_fn=watch)
    held_out = [sorted(set(range(80)) - set(index)) for index in calls]
    assert sorted(i for fold in held_out for i in fold) == list(range(80))  # every film held out exactly once
    for fold, index in zip(held_out, calls):
        assert not set(patients[fold]) & set(patients[index])  # no patient on both sides
        # and the film's calibrated probabilities are those of the fit that did not see it
        calibration = sc.fit(logits[index], labels[index], np.zeros(len(index), bool), CARD)
        np.testing.assert_allclose(checked["probabilities"][fold], sc.calibrated_probabilities(
            logits[fold], calibration.offsets, CARD["temperature"], calibration.temperature), atol=1e-12)
    assert checked["method"] == "10-fold by patient"


def test_cross_validated_figures_are_not_in_sample():
    """Ten films, all with the same logits, five of each of two classes, one patient each. Fitted on all ten, the
    two classes get the same offset; leaving one film out always leaves its class the smaller one, so the fit
    without it calls it the other class: cross-validated accuracy 0, where any in-sample figure would be 0.5."""
    from runtime.site_profile import fit_profile

    logits = np.zeros((10, 3))
    labels = ["COVID-19"] * 5 + ["Normal"] * 5
    profile = fit_profile(logits, labels, [f"p{i}" for i in range(10)], CARD, "here", model_sha256="0" * 64,
                          n_boot=20)
    cv = profile["cross_validated"]
    assert cv["method"] == "leave-one-patient-out" and cv["folds"] == 10
    assert cv["after"]["accuracy"] == 0.0
    assert cv["before"]["accuracy"] == 0.5  # equal probabilities: argmax is the first class, right for 5 of 10
    offsets = profile["parameters"]["offsets"]
    assert offsets[0] == pytest.approx(offsets[1], abs=1e-9) and offsets[2] == 0.0


def test_patient_folds_keep_patients_whole():
    labels = np.repeat([0, 1, 2], 40)
    patients = np.array([f"p{i // 3}" for i in range(120)])
    folds, method = sc.patient_folds(labels, patients, seed=1)
    assert method == "10-fold by patient" and len(folds) == 10
    assert sorted(np.concatenate(folds).tolist()) == list(range(120))
    owners = [set(patients[f]) for f in folds]
    assert all(not a & b for i, a in enumerate(owners) for b in owners[i + 1:])
    few = sc.patient_folds(labels[:20], patients[:20])
    assert few[1] == "leave-one-patient-out" and len(few[0]) == len(set(patients[:20]))
