"""Site calibration, the maths: per-class logit offsets (and a temperature when the films support one) fitted on a
site's labelled films, the uncertainty rule re-chosen on them when there are enough, and cross-validation by
patient, so that what the report says about the calibration was measured on films its fit never saw.

The calibrated probabilities of a film with logits z (the graph's `logits` output, before any temperature) are

    p = softmax((z + offsets) / (T * t))

T: the model's temperature (model.json `temperature`), t: the site's (1 when not fitted). `calibrated_probabilities`
is that formula and nothing else; the browser mirrors it line for line.

The fit minimises, over the offsets of the classes the site showed and log t,

    sum_i -log p_i[y_i]  +  OFFSET_PRIOR / 2 * sum_k (offset_k / T)^2  +  TEMPERATURE_PRIOR / 2 * (log t)^2

a maximum a posteriori estimate with a Gaussian prior centred on "no change": the data's weight grows with the number
of films, the prior's does not, so a few films move the model a little and many films move it as far as they show.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .bands import BANDS, KIND, MIN_SUPPORT, TARGET_ACCURACY, band, choose_threshold

# The offsets' prior, per unit of offset in the model's calibrated logit scale (offset / T). The curvature of one
# film's negative log likelihood in its class's offset is p(1 - p) / t^2, about 0.1 for the films a shifted site
# gives (the model is often confidently wrong there, p near 0.1 or 0.9). With OFFSET_PRIOR = 1, ten films weigh
# about as much as the prior, so an offset fitted on 10 films moves about halfway towards what those films alone
# would say, and 100 films most of the way. Halfway is what keeps ten films from doing harm: the films of one class
# among ten are a handful, and the full move they suggest is partly noise. Measured with the released model, 10
# films drawn 200 times and the rest scored: on a shifted set (30 hannover COVID-19 + 30 montgomery Normal films)
# accuracy 0.67 -> 0.87 with 1 (0.94 with 0.1, 0.74 with 4); on the model's own test split, where there is nothing
# to correct, 0.71 -> 0.69 with 1 (0.67 with 0.1, 0.70 with 4, worst draw 0.60 / 0.51 / 0.64). 1 takes most of the
# gain where there is one and costs about 2 points where there is none. (Issue 24 measured a regularised per-class
# offset fitted on 10 films of an unseen hospital lifting its accuracy from 0.36 to 0.69.)
OFFSET_PRIOR = 1.0
# The prior on log t. One film's curvature in log t is the spread of its scaled logits under its probabilities,
# about 1 for a model that separates the classes; 30 films then weigh as much as the prior: a temperature is only
# fitted from MIN_FILMS_TEMPERATURE films on, and moves about halfway there.
TEMPERATURE_PRIOR = 30.0
MIN_FILMS_TEMPERATURE = 30  # and at least two classes: a temperature from one class is a prevalence, not a spread
MIN_FILMS_BAND = 50  # the rule's own films (below): fewer cannot show 90 % right on the 10 confident films it needs
LEAVE_ONE_OUT_UP_TO = 30  # patients: up to this, every patient is a fold of its own; beyond, FOLDS folds
FOLDS = 10


def calibrated_probabilities(logits, offsets, model_temperature: float, site_temperature: float = 1.0) -> np.ndarray:
    """softmax((logits + offsets) / (model_temperature * site_temperature)) in float64, row by row ([n, K] or [K])."""
    u = (np.asarray(logits, np.float64) + np.asarray(offsets, np.float64)) / (model_temperature * site_temperature)
    u = u - u.max(axis=-1, keepdims=True)  # the same softmax, without overflow
    e = np.exp(u)
    return e / e.sum(axis=-1, keepdims=True)


@dataclass
class Calibration:
    """What one fit gives: the offsets (K, 0 for the classes the films did not show), the site's temperature t, and
    the uncertainty rule to use with them (model.json's `uncertainty` form: {"rule": ..., ...})."""

    offsets: np.ndarray
    temperature: float
    band: dict | None
    fitted_classes: list[int]
    fitted_temperature: bool


def _objective(params, z, y, free, fit_t, T):
    """The penalised negative log likelihood, its gradient and Hessian in (offsets of `free`, log t)."""
    n, k = z.shape
    b = np.zeros(k)
    b[free] = params[: len(free)]
    s = params[-1] if fit_t else 0.0
    a = np.exp(-s) / T
    u = (z + b) * a
    u_max = u.max(1, keepdims=True)
    log_p = u - u_max - np.log(np.exp(u - u_max).sum(1, keepdims=True))
    p = np.exp(log_p)
    onehot = np.eye(k)[y]
    g = p - onehot  # d nll_i / d u_i
    value = -log_p[np.arange(n), y].sum() + OFFSET_PRIOR / 2 * ((b / T) ** 2).sum() + TEMPERATURE_PRIOR / 2 * s**2
    # d u / d b = a, d u / d s = -u; J_i = diag(p_i) - p_i p_i^T is d p_i / d u_i.
    grad_b = a * g.sum(0) + OFFSET_PRIOR * b / T**2
    jac = np.einsum("ik,kl->ikl", p, np.eye(k)) - np.einsum("ik,il->ikl", p, p)
    hess_bb = a**2 * jac.sum(0) + OFFSET_PRIOR / T**2 * np.eye(k)
    grad = grad_b[free]
    hess = hess_bb[np.ix_(free, free)]
    if fit_t:
        ju = np.einsum("ikl,il->ik", jac, u)
        grad_s = -(g * u).sum() + TEMPERATURE_PRIOR * s
        hess_ss = (u * ju).sum() + (g * u).sum() + TEMPERATURE_PRIOR
        hess_bs = (-a * (ju + g).sum(0))[free]
        grad = np.append(grad, grad_s)
        hess = np.block([[hess, hess_bs[:, None]], [hess_bs[None, :], np.array([[hess_ss]])]])
    return value, grad, hess


def fit_parameters(logits, labels, model_temperature: float, fit_temperature: bool,
                   max_steps: int = 200) -> tuple[np.ndarray, float, list[int]]:
    """(offsets [K], t, the classes whose offset was fitted): the penalised fit above by damped Newton steps with
    backtracking (a 3-4 parameter problem: a few steps). A class absent from `labels` keeps offset 0."""
    z, y = np.asarray(logits, np.float64), np.asarray(labels, int)
    free = sorted(set(y.tolist()))
    params = np.zeros(len(free) + bool(fit_temperature))
    value, grad, hess = _objective(params, z, y, free, fit_temperature, model_temperature)
    for _ in range(max_steps):
        lowest = np.linalg.eigvalsh(hess).min()
        if lowest <= 1e-9:  # not convex here (log t): damp towards a gradient step
            hess = hess + (1e-6 - lowest) * np.eye(len(params))
        step = -np.linalg.solve(hess, grad)
        step *= min(1.0, 2.0 / max(np.abs(step).max(), 1e-300))  # at most 2 per step: e^(2) in t, 2 in a logit
        scale = 1.0
        while True:
            candidate = params + scale * step
            new = _objective(candidate, z, y, free, fit_temperature, model_temperature)
            if (np.isfinite(new[0]) and new[0] <= value + 1e-4 * scale * grad @ step) or scale < 1e-8:
                break
            scale /= 2
        if not np.isfinite(new[0]) or new[0] > value:  # no step lowers it: this is the minimum, to rounding
            break
        params, (value, grad, hess) = candidate, new
        if np.abs(scale * step).max() < 1e-10:
            break
    offsets = np.zeros(z.shape[1])
    offsets[free] = params[: len(free)]
    t = float(np.exp(params[-1])) if fit_temperature else 1.0
    return offsets, t, free


def model_rule(uncertainty: dict | None) -> dict | None:
    """The model's own rule (model.json `uncertainty`), as a site profile carries it; None for a model without one
    (an older export: its results have no band, calibrated or not)."""
    if not uncertainty:
        return None
    rule = dict(uncertainty.get("rule") or {"kind": KIND, "threshold": None})
    return {"rule": rule, "chosen_on": "model",
            "target_accuracy": uncertainty.get("target_accuracy", TARGET_ACCURACY),
            "min_support": uncertainty.get("min_support", MIN_SUPPORT),
            "target_reached": uncertainty.get("target_reached", rule.get("threshold") is not None)}


def site_rule(probabilities, labels, outside, uncertainty: dict | None) -> dict | None:
    """The rule re-chosen on the site's films (their calibrated probabilities) when there are MIN_FILMS_BAND of them,
    with the model's target and minimum support; otherwise the model's own rule. Films `outside` the rule's reach
    are left out, as the export leaves out the OOD ones: those given no class, and those unlike the training films
    (always uncertain, whatever the threshold)."""
    kept = ~np.asarray(outside, bool)
    base = model_rule(uncertainty)
    if kept.sum() < MIN_FILMS_BAND:
        return base
    base = base or {"target_accuracy": TARGET_ACCURACY, "min_support": MIN_SUPPORT}
    probabilities = np.asarray(probabilities)[kept]
    correct = probabilities.argmax(1) == np.asarray(labels)[kept]
    threshold = choose_threshold(probabilities.max(1), correct, base["target_accuracy"], base["min_support"])
    return {**base, "rule": {"kind": KIND, "threshold": threshold}, "chosen_on": "site",
            "target_reached": threshold is not None, "films": int(kept.sum())}


def fit(logits, labels, outside, card: dict) -> Calibration:
    """The whole procedure on some films: offsets, a temperature when they support one, and the rule (chosen on the
    films not `outside` its reach: see site_rule)."""
    y = np.asarray(labels, int)
    fit_t = len(y) >= MIN_FILMS_TEMPERATURE and len(set(y.tolist())) >= 2
    offsets, t, free = fit_parameters(logits, y, card["temperature"], fit_t)
    probabilities = calibrated_probabilities(logits, offsets, card["temperature"], t)
    return Calibration(offsets, t, site_rule(probabilities, y, outside, card.get("uncertainty")), free, fit_t)


def patient_folds(labels, patients, seed: int = 0) -> tuple[list[np.ndarray], str]:
    """Film indices of each fold, a patient's films always in one fold: one patient per fold up to
    LEAVE_ONE_OUT_UP_TO patients, else FOLDS folds dealt out in a seeded order, patients grouped by their first
    film's label so that every fold gets its share of each class. Also the method in words."""
    patients = np.asarray(patients).astype(str)
    unique, first, index = np.unique(patients, return_index=True, return_inverse=True)
    if len(unique) <= LEAVE_ONE_OUT_UP_TO:
        return [np.flatnonzero(index == i) for i in range(len(unique))], "leave-one-patient-out"
    order = np.random.default_rng(seed).permutation(len(unique))
    order = order[np.argsort(np.asarray(labels)[first][order], kind="stable")]
    fold_of = np.empty(len(unique), int)
    fold_of[order] = np.arange(len(unique)) % FOLDS
    return [np.flatnonzero(fold_of[index] == f) for f in range(FOLDS)], f"{FOLDS}-fold by patient"


def cross_validate(logits, labels, patients, withheld, card: dict, seed: int = 0, unlike_training=None,
                   fit_fn=fit) -> dict:
    """Every film scored by a calibration fitted on the other patients' films only: its calibrated probabilities
    and band (runtime.bands.band, as the predictor gives it: None when `withheld`, uncertain when
    `unlike_training`). `fit_fn` is `fit` (a test may watch what each fold's fit saw)."""
    z, y, withheld = np.asarray(logits, np.float64), np.asarray(labels, int), np.asarray(withheld, bool)
    unlike = np.zeros(len(y), bool) if unlike_training is None else np.asarray(unlike_training, bool)
    folds, method = patient_folds(y, patients, seed)
    probabilities = np.zeros_like(z)
    bands = [None] * len(y)
    for held_out in folds:
        rest = np.setdiff1d(np.arange(len(y)), held_out)
        calibration = fit_fn(z[rest], y[rest], withheld[rest] | unlike[rest], card)
        probabilities[held_out] = calibrated_probabilities(z[held_out], calibration.offsets, card["temperature"],
                                                           calibration.temperature)
        for i in held_out:
            bands[i] = band(probabilities[i], bool(withheld[i]), calibration.band, bool(unlike[i]))
    return {"method": method, "folds": len(folds), "probabilities": probabilities, "bands": bands}


def figures(labels, probabilities, bands, patients, classes, n_boot: int = 1000, seed: int = 0) -> dict:
    """What a calibration is judged by on some films: accuracy and macro AUC (95 % CI by patient), each class's
    sensitivity, mean negative log likelihood, ECE (10 bins) and the accuracy of each band."""
    # Here, not at the top: the predictor imports this module to apply a profile, and core.metrics loads sklearn.
    from core.metrics import expected_calibration_error, macro_auc, patient_resamples, percentile_interval

    y, probs, patients = np.asarray(labels, int), np.asarray(probabilities, np.float64), np.asarray(patients)
    correct = probs.argmax(1) == y
    samples = {"accuracy": [], "macro_auc": []}
    for chosen in patient_resamples(patients, n_boot, seed):
        samples["accuracy"].append(correct[chosen].mean())
        samples["macro_auc"].append(macro_auc(y[chosen], probs[chosen]))
    bands = np.asarray(bands, object)
    out = {"films": int(len(y)),
           "accuracy": float(correct.mean()), "accuracy_ci95": percentile_interval(samples["accuracy"]),
           "macro_auc": macro_auc(y, probs), "macro_auc_ci95": percentile_interval(samples["macro_auc"]),
           "sensitivity": {c: float(correct[y == k].mean()) if (y == k).any() else None
                           for k, c in enumerate(classes)},
           "nll": float(-np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, None)).mean()),
           "ece": expected_calibration_error(probs, y, 10)}
    for name in BANDS:
        inside = bands == name
        out[name] = {"n": int(inside.sum()),
                     "accuracy": float(correct[inside].mean()) if inside.any() else None}
    return out
