"""The site-shift warning without labels (issue 24 point 4; docs/site.md): are a batch of one site's films unlike the
films the model was validated on? Two distributions of the batch are compared with the validation split's, which
the export stores in model.json `site_shift`:

- the OOD score (the graph's `ood_score` output), by the two-sample Kolmogorov-Smirnov test;
- the predicted class (the argmax of the graph's `logits`: the model as it comes, so that a site profile does not
  change the check), by Pearson's chi-square test of homogeneity.

The batch is judged "shifted" when either test's p-value, doubled (Bonferroni's correction for two tests), is below
`alpha`; below `min_films` films it is not judged at all. Nothing here needs labels. The formulas, to be mirrored
line for line (the browser's port must give the same numbers):

Kolmogorov-Smirnov. r: the reference's n scores, b: the batch's m scores.

    D = max over every value v of r and b of |#(r <= v) / n - #(b <= v) / m|
    N_e = n m / (n + m)
    lambda = (sqrt(N_e) + 0.12 + 0.11 / sqrt(N_e)) * D        (Stephens' small-sample correction)
    p_ood = Q(lambda) = 2 * sum_{j=1..100} (-1)^(j-1) exp(-2 j^2 lambda^2), clipped to [0, 1];
            1 when lambda < 0.2 (Q(0.2) = 1 - 5e-13); the sum stops once a term is below 1e-16

(Numerical Recipes, 3rd ed., section 14.3.3, `ksdist`/`probks`.) #(r <= v) counts the ties of v in full, so tied
scores never split.

Chi-square of homogeneity. c_k: the reference's count of class k, d_k: the batch's (K classes), R = sum c_k,
B = sum d_k, N = R + B; only the classes with c_k + d_k > 0 take part, K' of them:

    X2 = sum_k [ (c_k - R (c_k + d_k) / N)^2 / (R (c_k + d_k) / N) + (d_k - B (c_k + d_k) / N)^2 / (B (c_k + d_k) / N) ]
    df = K' - 1;  p_class = 1 when df = 0, else P(chi2_df > X2) = Q(df / 2, X2 / 2):
      df even: exp(-x/2) * sum_{i=0..df/2-1} (x/2)^i / i!
      df odd:  erfc(sqrt(x/2)) + exp(-x/2) * sum_{i=1..(df-1)/2} (x/2)^(i-1/2) / Gamma(i+1/2)
    erfc: Numerical Recipes' `erfcc` (Chebyshev fit, fractional error below 1.2e-7), written out in `erfc` below

Combined: p = min(1, 2 * min(p_ood, p_class)); shifted = p < alpha.

What it can and cannot say: sampling alone makes the batch differ a little; the tests say when it differs more. A
batch whose case mix differs from the validation split's (a COVID-19 ward's films, a screening clinic's normals)
differs in its predicted classes without any change of scanner or population, and is flagged too: the words say
the films differ, not why. Measured rates: docs/site.md.
"""

from __future__ import annotations

import math

import numpy as np

MIN_FILMS = 20  # a batch below this is not judged: the tests see little in fewer films, and say so
# The combined level: at most 5 % of batches like the validation split's are flagged (Bonferroni keeps the two tests
# together under it). A false alarm costs a local validation that is good practice anyway; a miss leaves a clinician
# trusting a model that may be right on a third of the site's films. Measured on the released model (docs/site.md):
# 0.1-1.2 % of random batches of its own test split flagged at 0.05 (at most 0.1 % at 0.01); Montgomery + Shenzhen
# caught in 45 / 70 / 91 % of batches of 20 / 30 / 50 films at 0.05, 17 / 41 / 71 % at 0.01.
ALPHA = 0.05
TESTS = ("ood_score", "predicted_class")
METHOD = ("two-sample Kolmogorov-Smirnov on ood_score (asymptotic p, Stephens' correction) and chi-square of "
          "homogeneity on the argmax of logits, Bonferroni for two tests: shifted when min(1, 2 min(p)) < alpha")
SHIFTED = "these films differ from the training collections: validate locally before relying on the results"
NOT_SHIFTED = ("these films' OOD scores and predicted classes are within what sampling explains, against the "
               "validation split's")
NO_REFERENCE = "not checked: this model.json has no site_shift reference (an export made before the check existed)"


def too_few(n: int, min_films: int) -> str:
    return f"not judged: {n} film(s); the site-shift check needs at least {min_films} films of one site"


def reference(ood_scores, logits, classes, model_file: str) -> dict:
    """What a model file's `site_shift.references` entry holds: the validation split's films, their OOD scores
    (sorted) and their predicted-class counts. The export writes it; the measurement (training/evaluation/
    site_shift.py) computes it the same way from the same split."""
    ood = np.sort(np.asarray(ood_scores, np.float64).reshape(-1))
    top = np.asarray(logits, np.float64).reshape(len(ood), len(classes)).argmax(1) if len(ood) else np.zeros(0, int)
    return {"model_file": model_file, "films": int(len(ood)), "ood_scores": [float(v) for v in ood],
            "class_counts": {c: int((top == k).sum()) for k, c in enumerate(classes)}}


def card_section(references: list[dict]) -> dict:
    """model.json `site_shift`: the rule's parameters and one reference per model file."""
    return {"min_films": MIN_FILMS, "alpha": ALPHA, "tests": list(TESTS), "correction": "bonferroni",
            "method": METHOD, "split": "val", "references": {r["model_file"]: r for r in references}}


def ks_statistic(reference_scores, batch_scores) -> float:
    """D = max over v of |F_r(v) - F_b(v)|, each F the share of its sample <= v (ties counted in full)."""
    r = np.sort(np.asarray(reference_scores, np.float64))
    b = np.sort(np.asarray(batch_scores, np.float64))
    values = np.concatenate([r, b])
    f_r = np.searchsorted(r, values, side="right") / len(r)
    f_b = np.searchsorted(b, values, side="right") / len(b)
    return float(np.abs(f_r - f_b).max())


def kolmogorov_q(lam: float) -> float:
    """Q_KS(lambda) = 2 sum_{j>=1} (-1)^(j-1) exp(-2 j^2 lambda^2): the Kolmogorov distribution's upper tail."""
    if lam < 0.2:
        return 1.0
    total, sign = 0.0, 1.0
    for j in range(1, 101):
        term = sign * 2.0 * math.exp(-2.0 * j * j * lam * lam)
        total += term
        if abs(term) < 1e-16:
            break
        sign = -sign
    return min(1.0, max(0.0, total))


def ks_p_value(d: float, n: int, m: int) -> float:
    """The asymptotic two-sided p-value of D for samples of n and m, with Stephens' correction."""
    ne = n * m / (n + m)
    return kolmogorov_q((math.sqrt(ne) + 0.12 + 0.11 / math.sqrt(ne)) * d)


def chi_square_homogeneity(reference_counts, batch_counts) -> tuple[float, int]:
    """(X2, df) of the 2 x K table of counts; classes absent from both rows take no part."""
    c = np.asarray(reference_counts, np.float64)
    d = np.asarray(batch_counts, np.float64)
    r_total, b_total = c.sum(), d.sum()
    n = r_total + b_total
    x2, present = 0.0, 0
    for ck, dk in zip(c, d):
        column = ck + dk
        if column == 0:
            continue
        present += 1
        expected_r, expected_b = r_total * column / n, b_total * column / n
        x2 += (ck - expected_r) ** 2 / expected_r + (dk - expected_b) ** 2 / expected_b
    return float(x2), max(present - 1, 0)


def erfc(x: float) -> float:
    """The complementary error function, Numerical Recipes' erfcc (fractional error < 1.2e-7): the browser has no
    erfc, so both sides use this fit and agree to rounding."""
    z = abs(x)
    t = 1.0 / (1.0 + 0.5 * z)
    ans = t * math.exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (
        -0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))))
    return ans if x >= 0 else 2.0 - ans


def chi_square_p_value(x2: float, df: int) -> float:
    """P(chi2 with df degrees of freedom > x2), for whole df (the regularised upper incomplete gamma
    Q(df/2, x2/2) in closed form); 1 for df = 0."""
    if df <= 0:
        return 1.0
    half = x2 / 2.0
    if df % 2 == 0:
        term, total = 1.0, 1.0
        for i in range(1, df // 2):
            term *= half / i
            total += term
        return min(1.0, math.exp(-half) * total)
    total, term = 0.0, 0.0
    for i in range(1, (df - 1) // 2 + 1):
        # (x/2)^(i-1/2) / Gamma(i+1/2): the first is sqrt(x/2) / Gamma(3/2) = 2 sqrt(x/2) / sqrt(pi)
        term = 2.0 * math.sqrt(half) / math.sqrt(math.pi) if i == 1 else term * half / (i - 0.5)
        total += term
    return min(1.0, erfc(math.sqrt(half)) + math.exp(-half) * total)


def check(ood_scores, predicted, card: dict, model_file: str) -> dict:
    """The verdict on a batch of one site's films: `ood_scores` (one per film) and `predicted` (the class name of
    each film's logits' argmax), against model.json `card`'s reference for `model_file`.

    {"judged": bool, "shifted": bool or None (not judged), "n", "min_films", "alpha", "p_value" (combined),
    "p_values": {"ood_score", "predicted_class"}, "statistics": {"ks_d", "chi_square", "df"}, "class_counts" (the
    batch's), "message"}."""
    ood = np.asarray(ood_scores, np.float64).reshape(-1)
    classes = list(card["classes"])
    n = int(len(ood))
    counts = {c: sum(1 for p in predicted if p == c) for c in classes}
    spec = card.get("site_shift")
    ref = (spec or {}).get("references", {}).get(model_file)
    min_films = int(spec["min_films"]) if spec else MIN_FILMS
    out = {"judged": False, "shifted": None, "n": n, "min_films": min_films,
           "alpha": float(spec["alpha"]) if spec else None, "p_value": None, "p_values": None,
           "statistics": None, "class_counts": counts}
    if ref is None:
        return {**out, "message": NO_REFERENCE}
    if n < min_films:
        return {**out, "message": too_few(n, min_films)}
    d = ks_statistic(ref["ood_scores"], ood)
    p_ood = ks_p_value(d, len(ref["ood_scores"]), n)
    x2, df = chi_square_homogeneity([ref["class_counts"][c] for c in classes], [counts[c] for c in classes])
    p_class = chi_square_p_value(x2, df)
    p = min(1.0, 2.0 * min(p_ood, p_class))
    shifted = p < out["alpha"]
    return {**out, "judged": True, "shifted": bool(shifted), "p_value": p,
            "p_values": {"ood_score": p_ood, "predicted_class": p_class},
            "statistics": {"ks_d": d, "chi_square": x2, "df": df},
            "message": SHIFTED if shifted else NOT_SHIFTED}


def check_results(results: list[dict], card: dict, model_file: str) -> dict:
    """`check` on the Predictor's results of a batch (those that have an ood_score and logits; errors are left
    out)."""
    classes = list(card["classes"])
    scored = [r for r in results if "ood_score" in r and "logits" in r]
    return check([r["ood_score"] for r in scored], [classes[int(np.argmax(r["logits"]))] for r in scored], card,
                 model_file)


def summary_line(verdict: dict) -> str:
    """One line for a person: the verdict and its numbers."""
    if not verdict["judged"]:
        return f"site shift: {verdict['message']}"
    p, s = verdict["p_values"], verdict["statistics"]
    return (f"site shift ({verdict['n']} films): {verdict['message']} (p = {verdict['p_value']:.3g}, alpha "
            f"{verdict['alpha']:g}; OOD score KS D = {s['ks_d']:.3f}, p = {p['ood_score']:.3g}; predicted classes "
            f"chi-square = {s['chi_square']:.2f}, df {s['df']}, p = {p['predicted_class']:.3g})")
