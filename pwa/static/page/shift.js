// @ts-check
// The site-shift warning for a batch (docs/site.md): the browser's copy of runtime/site_shift.py, line for line.
// Are a batch of one site's films unlike the films the model was validated on? The OOD scores (two-sample
// Kolmogorov-Smirnov) and the predicted classes (the argmax of the raw logits; chi-square of homogeneity) are
// compared with model.json `site_shift.references[<model file>]`; shifted when min(1, 2 min(p)) < alpha. Below
// `min_films` films the batch is not judged. tests/pwa/test_site_shift.py holds both sides to the same numbers.

export const SHIFTED = "these films differ from the training collections: validate locally before relying on the " +
  "results";
export const NOT_SHIFTED = "these films' OOD scores and predicted classes are within what sampling explains, " +
  "against the validation split's";
export const NO_REFERENCE = "not checked: this model.json has no site_shift reference (an export made before the " +
  "check existed)";
const MIN_FILMS = 20;

function tooFew(n, minFilms) {
  return `not judged: ${n} film(s); the site-shift check needs at least ${minFilms} films of one site`;
}

/** The number of values of the ascending array `sorted` that are <= v (numpy's searchsorted, side "right"). */
function countAtMost(sorted, v) {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (sorted[mid] <= v) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** D = max over v of |F_r(v) - F_b(v)|, each F the share of its sample <= v (ties counted in full). */
export function ksStatistic(referenceScores, batchScores) {
  const r = [...referenceScores].sort((a, b) => a - b);
  const b = [...batchScores].sort((x, y) => x - y);
  let d = 0;
  for (const v of [...r, ...b]) {
    d = Math.max(d, Math.abs(countAtMost(r, v) / r.length - countAtMost(b, v) / b.length));
  }
  return d;
}

/** Q_KS(lambda) = 2 sum_{j>=1} (-1)^(j-1) exp(-2 j^2 lambda^2). */
export function kolmogorovQ(lam) {
  if (lam < 0.2) return 1;
  let total = 0;
  let sign = 1;
  for (let j = 1; j <= 100; j++) {
    const term = sign * 2 * Math.exp(-2 * j * j * lam * lam);
    total += term;
    if (Math.abs(term) < 1e-16) break;
    sign = -sign;
  }
  return Math.min(1, Math.max(0, total));
}

export function ksPValue(d, n, m) {
  const ne = (n * m) / (n + m);
  return kolmogorovQ((Math.sqrt(ne) + 0.12 + 0.11 / Math.sqrt(ne)) * d);
}

/** [X2, df] of the 2 x K table of counts; classes absent from both rows take no part. */
export function chiSquareHomogeneity(referenceCounts, batchCounts) {
  const rTotal = referenceCounts.reduce((a, b) => a + b, 0);
  const bTotal = batchCounts.reduce((a, b) => a + b, 0);
  const n = rTotal + bTotal;
  let x2 = 0;
  let present = 0;
  referenceCounts.forEach((ck, k) => {
    const dk = batchCounts[k];
    const column = ck + dk;
    if (column === 0) return;
    present += 1;
    const expectedR = (rTotal * column) / n;
    const expectedB = (bTotal * column) / n;
    x2 += (ck - expectedR) ** 2 / expectedR + (dk - expectedB) ** 2 / expectedB;
  });
  return [x2, Math.max(present - 1, 0)];
}

/** Numerical Recipes' erfcc, as runtime/site_shift.py writes it. */
export function erfc(x) {
  const z = Math.abs(x);
  const t = 1 / (1 + 0.5 * z);
  const ans = t * Math.exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (
    -0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))));
  return x >= 0 ? ans : 2 - ans;
}

/** P(chi2 with df degrees of freedom > x2), for whole df; 1 for df = 0. */
export function chiSquarePValue(x2, df) {
  if (df <= 0) return 1;
  const half = x2 / 2;
  if (df % 2 === 0) {
    let term = 1;
    let total = 1;
    for (let i = 1; i < df / 2; i++) {
      term *= half / i;
      total += term;
    }
    return Math.min(1, Math.exp(-half) * total);
  }
  let total = 0;
  let term = 0;
  for (let i = 1; i <= (df - 1) / 2; i++) {
    term = i === 1 ? (2 * Math.sqrt(half)) / Math.sqrt(Math.PI) : (term * half) / (i - 0.5);
    total += term;
  }
  return Math.min(1, erfc(Math.sqrt(half)) + Math.exp(-half) * total);
}

/** The verdict on a batch: `oodScores` (one per film), `predicted` (class names of the logits' argmax), against
 * `card`'s reference for `modelFile`; the same object runtime/site_shift.py `check` returns. */
export function check(oodScores, predicted, card, modelFile) {
  const classes = card.classes;
  const n = oodScores.length;
  const counts = Object.fromEntries(classes.map((c) => [c, predicted.filter((p) => p === c).length]));
  const spec = card.site_shift;
  const ref = spec?.references?.[modelFile];
  const minFilms = spec ? Number(spec.min_films) : MIN_FILMS;
  const out = { judged: false, shifted: null, n, min_films: minFilms, alpha: spec ? Number(spec.alpha) : null,
    p_value: null, p_values: null, statistics: null, class_counts: counts };
  if (!ref) return { ...out, message: NO_REFERENCE };
  if (n < minFilms) return { ...out, message: tooFew(n, minFilms) };
  const d = ksStatistic(ref.ood_scores, oodScores);
  const pOod = ksPValue(d, ref.ood_scores.length, n);
  const [x2, df] = chiSquareHomogeneity(classes.map((c) => ref.class_counts[c]), classes.map((c) => counts[c]));
  const pClass = chiSquarePValue(x2, df);
  const p = Math.min(1, 2 * Math.min(pOod, pClass));
  const shifted = p < /** @type {number} */ (out.alpha);
  return { ...out, judged: true, shifted, p_value: p, p_values: { ood_score: pOod, predicted_class: pClass },
    statistics: { ks_d: d, chi_square: x2, df }, message: shifted ? SHIFTED : NOT_SHIFTED };
}

/** `check` on a batch's results (the worker's: `oodScore`, `logits`); files that failed take no part. */
export function checkResults(results, card, modelFile) {
  const scored = results.filter((r) => !r.error && Array.isArray(r.logits) && Number.isFinite(r.oodScore));
  const argmax = (values) => values.indexOf(Math.max(...values));
  return check(scored.map((r) => r.oodScore), scored.map((r) => card.classes[argmax(r.logits)]), card, modelFile);
}
