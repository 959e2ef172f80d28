"""Site calibration measured over random draws (training/evaluation/site_loop.py), on synthetic logits whose answers
are known by construction."""

import numpy as np
import pytest

from training.evaluation.site_loop import SiteFilms, calibration_draws, calibration_table, draw_films, spread, summarise

CARD = {"classes": ["COVID-19", "Normal", "Pneumonia"], "temperature": 1.0,
        "uncertainty": {"rule": {"kind": "top_probability_below", "threshold": 0.9}, "target_accuracy": 0.9,
                        "min_support": 10, "target_reached": True}}


def site(logits_of_class: dict, per_class: int = 30) -> SiteFilms:
    labels = np.repeat(list(logits_of_class), per_class)
    logits = np.array([logits_of_class[y] for y in labels], float)
    n = len(labels)
    return SiteFilms(logits, labels, np.array([f"p{i}" for i in range(n)]), np.zeros(n, bool), np.zeros(n, bool),
                     CARD)


def test_a_site_the_model_already_gets_right_stays_right():
    # every film far on the right side, confidently: nothing to correct, and a 10-film fit must not break it
    films = site({0: [5.0, -5.0, -20.0], 1: [-5.0, 5.0, -20.0]})
    s = summarise(calibration_draws(films, ks=(10,), draws=20, seed=1))[10]
    assert s["draws"] == 20 and s["scored_mean"] == 50  # 60 films, one patient each: 50 scored per draw
    for when in ("before", "after"):
        for metric in ("accuracy", "macro_auc", "confident_share", "confident_accuracy"):
            assert s[when][metric]["mean"] == 1.0 and s[when][metric]["min"] == 1.0, (when, metric)
    assert s["accuracy_fell"] == 0.0


def test_a_shifted_site_is_corrected_and_its_ranking_kept():
    # class 0's films all fall into class 1 (z0 - z1 = -1), class 1's are right (z0 - z1 = -3): before, accuracy is
    # the share of class 1 among the films scored; an offset between 1 and 3 in favour of class 0 is perfect. The
    # ranking is perfect throughout: AUC 1 before and after (offsets cannot reorder two classes).
    films = site({0: [1.0, 2.0, -20.0], 1: [-1.0, 2.0, -20.0]})
    draws = calibration_draws(films, ks=(20,), draws=30, seed=0)[20]
    assert draws["scored"] == [40] * 30
    assert 0.3 < np.mean(draws["before"]["accuracy"]) < 0.7
    assert np.mean(draws["after"]["accuracy"]) > np.mean(draws["before"]["accuracy"]) + 0.2
    assert set(draws["before"]["macro_auc"]) == {1.0} and set(draws["after"]["macro_auc"]) == {1.0}


def test_draws_hold_two_classes():
    labels = np.array([0] * 99 + [1])
    rng = np.random.default_rng(0)
    for _ in range(5):
        chosen = draw_films(rng, labels, 5)
        assert len(chosen) == 5 and 99 in chosen
    with pytest.raises(ValueError, match="two classes"):
        draw_films(rng, np.zeros(10, int), 5)


def test_spread_and_table_by_hand():
    s = spread([0.0, 1.0, float("nan")])
    assert s["mean"] == 0.5 and s["sd"] == pytest.approx(np.sqrt(0.5)) and s["min"] == 0.0 and s["draws"] == 2

    def metric(mean, sd, low, high):
        return {"mean": mean, "sd": sd, "p2_5": low, "p97_5": high, "min": low, "draws": 200}

    row = {"draws": 200, "scored_mean": 39.6, "accuracy_fell": 0.05, "temperature_fitted": 0.0,
           "before": {m: metric(0.5, 0.1, 0.3, 0.7) for m in ("accuracy", "macro_auc", "confident_share",
                                                              "confident_accuracy")},
           "after": {m: metric(0.8, 0.05, 0.7, 0.9) for m in ("accuracy", "macro_auc", "confident_share",
                                                             "confident_accuracy")}}
    text = calibration_table({"a site": {10: row}})
    assert ("| a site | 10 | 200 | 40 | 0.50 ± 0.10 → 0.80 ± 0.05 [0.70, 0.90] | 0.70 | 5% | "
            "0.50 ± 0.10 → 0.80 ± 0.05 [0.70, 0.90] |") in text
