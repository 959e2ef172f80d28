// @ts-check
// The browser's copy of what site validation takes from core/metrics.py: classification metrics, one-vs-rest AUC,
// the patient bootstrap (numpy's own draws: numpy-random.js) and its percentile intervals, reliability bins and
// the expected calibration error. The same definitions, in the same order, so that the app's figures equal
// `cxr validate`'s (tests/pwa/test_site_numerics.py compares them on the same inputs).
//
// NaN stands where Python has float("nan") (an undefined rate or AUC); null where Python has None. JSON.stringify
// writes both as null, as core/jsonio.py does.
import { argmax } from "../shared/calibration.js";
import { NumpyRandom } from "./numpy-random.js";

/** a / b, NaN when b is 0 (core/metrics.py `_safe_div`). */
const safeDiv = (a, b) => (b ? a / b : NaN);

export const mean = (values) => values.reduce((a, b) => a + b, 0) / values.length;

// A bootstrap resample holds films several times and others not at all. Its metrics only depend on how often each
// film is in it, so here a resample is a weight per film (0, 1, 2, ...) rather than a list of indices: every sum
// below is over films, weighted, and the films are sorted by score once, not once per resample. The sums are of
// whole numbers (and halves, for tied AUC pairs), exact in float64, so a weighted figure is the very number the
// resample's own list would give.

/** Film indices in ascending order of `score` (ties in any order: the AUC counts a tie as half either way). */
export const ascending = (score) => Array.from(score, (_, i) => i).sort((a, b) => score[a] - score[b]);

/**
 * ROC AUC of `score` for `positive` (booleans), each film counted `weight[i]` times: the Mann-Whitney statistic
 * with ties counted half, which is what sklearn's roc_auc_score computes (the area under the ROC curve through
 * every distinct threshold); NaN when one side is empty.
 * @param {number[]} score
 * @param {boolean[]} positive
 * @param {ArrayLike<number> | null} [weight] null: every film once
 * @param {number[]} [order] ascending(score), when already known
 */
export function aucOrNan(score, positive, weight = null, order = ascending(score)) {
  let nPositive = 0, nNegative = 0;
  for (let i = 0; i < score.length; i++) {
    const w = weight ? weight[i] : 1;
    if (positive[i]) nPositive += w;
    else nNegative += w;
  }
  if (!nPositive || !nNegative) return NaN;
  let pairs = 0, negativesBelow = 0;
  for (let a = 0; a < order.length;) {
    let b = a, pos = 0, neg = 0;
    for (; b < order.length && score[order[b]] === score[order[a]]; b++) {
      const i = order[b], w = weight ? weight[i] : 1;
      if (positive[i]) pos += w;
      else neg += w;
    }
    pairs += pos * negativesBelow + 0.5 * pos * neg; // a run of tied scores: its pairs count half
    negativesBelow += neg;
    a = b;
  }
  return pairs / (nPositive * nNegative);
}

/** Per class k: its scores (probs[:, k]) and their ascending order, computed once for many resamples. */
export function classScores(probs, k) {
  return Array.from({ length: k }, (_, c) => {
    const score = probs.map((row) => row[c]);
    return { score, order: ascending(score) };
  });
}

/**
 * The mean of the classes' one-vs-rest AUCs that are defined; NaN when none is.
 * @param {number[]} y
 * @param {number[][]} probs
 * @param {ArrayLike<number> | null} [weight] each film's count (null: once)
 * @param {{score: number[], order: number[]}[]} [scores] classScores(probs, K), when already known
 */
export function macroAuc(y, probs, weight = null, scores = classScores(probs, probs.length ? probs[0].length : 0)) {
  const aucs = scores.map(({ score, order }, c) => aucOrNan(score, y.map((label) => label === c), weight, order))
    .filter((auc) => !Number.isNaN(auc));
  return aucs.length ? mean(aucs) : NaN;
}

/**
 * core/metrics.py `classification_metrics`: accuracy, the confusion matrix (rows: true, columns: predicted) and
 * per class precision (PPV), recall (sensitivity), specificity, F1, one-vs-rest AUC and support; each film counted
 * `weight[i]` times (null: once).
 * @param {number[]} y
 * @param {number[][]} probs
 * @param {string[]} classes
 * @param {ArrayLike<number> | null} [weight]
 * @param {{score: number[], order: number[]}[]} [scores] classScores(probs, K), when already known
 */
export function classificationMetrics(y, probs, classes, weight = null, scores = classScores(probs, classes.length)) {
  const k = classes.length;
  const confusion = Array.from({ length: k }, () => new Array(k).fill(0));
  let total = 0, right = 0;
  y.forEach((label, i) => {
    const w = weight ? weight[i] : 1;
    const predicted = argmax(probs[i]);
    confusion[label][predicted] += w;
    total += w;
    if (predicted === label) right += w;
  });
  const perClass = {};
  for (let c = 0; c < k; c++) {
    const tp = confusion[c][c];
    const fp = confusion.reduce((s, row) => s + row[c], 0) - tp;
    const fn = confusion[c].reduce((s, v) => s + v, 0) - tp;
    const tn = total - tp - fp - fn;
    const precision = safeDiv(tp, tp + fp), recall = safeDiv(tp, tp + fn);
    perClass[classes[c]] = {
      precision,
      recall,
      specificity: safeDiv(tn, tn + fp),
      f1: tp ? safeDiv(2 * precision * recall, precision + recall) : (tp + fp + fn ? 0 : NaN),
      auc: aucOrNan(scores[c].score, y.map((label) => label === c), weight, scores[c].order),
      support: confusion[c].reduce((s, v) => s + v, 0),
    };
  }
  const aucs = Object.values(perClass).map((v) => v.auc).filter((auc) => !Number.isNaN(auc));
  return { n: total, accuracy: safeDiv(right, total), macro_auc: aucs.length ? mean(aucs) : NaN,
    per_class: perClass, confusion };
}

/** The scalar metrics of classificationMetrics by name (core/metrics.py `_scalars`), in its order. */
function scalars(m) {
  const out = { accuracy: m.accuracy, macro_auc: m.macro_auc };
  for (const [c, values] of Object.entries(m.per_class)) {
    for (const name of ["precision", "recall", "specificity", "f1", "auc"]) out[`${c}/${name}`] = values[name];
  }
  return out;
}

/** Sorted unique values, and for each value its position among them (np.unique with return_inverse). Strings sort
 * by code unit, as numpy sorts them (the same order for every character outside the astral planes). */
export function uniqueInverse(values) {
  const unique = [...new Set(values)].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const position = new Map(unique.map((v, i) => [v, i]));
  return { unique, inverse: values.map((v) => /** @type {number} */ (position.get(v))) };
}

// One bootstrap's draws depend only on the number of patients, the count and the seed (every call of
// `patient_resamples` starts a new generator from the seed): computed once per such triple.
const drawCache = new Map();

function bootstrapDraws(patientCount, nBoot, seed) {
  const key = `${patientCount}/${nBoot}/${seed}`;
  if (!drawCache.has(key)) {
    const rng = new NumpyRandom(seed);
    const draws = [];
    for (let b = 0; b < nBoot; b++) draws.push(rng.integers(patientCount, patientCount));
    if (drawCache.size > 32) drawCache.clear();
    drawCache.set(key, draws);
  }
  return drawCache.get(key);
}

/**
 * core/metrics.py `patient_resamples`, as weights: for each of `nBoot` resamples, how many times each film is in
 * it. Patients (not films) are drawn with replacement, by numpy's generator seeded by `seed`, so that several films
 * of one patient count as one unit of evidence.
 * @returns {Generator<Int32Array>}
 */
export function* patientResamples(patients, nBoot, seed = 0) {
  const { unique, inverse } = uniqueInverse(patients);
  const members = unique.map(() => /** @type {number[]} */ ([]));
  inverse.forEach((u, i) => members[u].push(i));
  for (const draw of bootstrapDraws(unique.length, nBoot, seed)) {
    const weight = new Int32Array(patients.length);
    for (const u of draw) for (const i of members[u]) weight[i] += 1;
    yield weight;
  }
}

/** The weighted mean of `values` (numbers), each counted weight[i] times. */
export function weightedMean(values, weight) {
  let sum = 0, n = 0;
  for (let i = 0; i < values.length; i++) {
    sum += weight[i] * values[i];
    n += weight[i];
  }
  return sum / n;
}

/** numpy.percentile(values, q) with its default ("linear") method. */
export function percentile(sorted, q) {
  const n = sorted.length;
  const quantile = q / 100;
  const virtual = n * quantile + (1 + quantile * (1 - 1 - 1)) - 1; // numpy's _compute_virtual_index, alpha = beta = 1
  let previous = Math.floor(virtual), next = previous + 1;
  if (virtual >= n - 1) previous = next = n - 1;
  else if (virtual < 0) previous = next = 0;
  const gamma = virtual - Math.floor(virtual);
  const a = sorted[previous], b = sorted[next];
  const diff = b - a;
  return gamma >= 0.5 ? b - diff * (1 - gamma) : a + diff * gamma; // numpy's _lerp
}

/** core/metrics.py `percentile_interval`: the 95 % percentile interval, ignoring NaN; [NaN, NaN] when nothing is
 * left. */
export function percentileInterval(values, alpha = 0.05) {
  const kept = values.filter((v) => !Number.isNaN(v)).sort((a, b) => a - b);
  if (!kept.length) return [NaN, NaN];
  return [percentile(kept, (100 * alpha) / 2), percentile(kept, 100 * (1 - alpha / 2))];
}

/** core/metrics.py `bootstrap_ci`: a 95 % interval for every scalar metric, by patient resampling. */
export function bootstrapCi(y, probs, patients, classes, nBoot = 1000, seed = 0) {
  const samples = {};
  const scores = classScores(probs, classes.length);
  for (const weight of patientResamples(patients, nBoot, seed)) {
    for (const [name, value] of Object.entries(scalars(classificationMetrics(y, probs, classes, weight, scores)))) {
      (samples[name] ??= []).push(value);
    }
  }
  return Object.fromEntries(Object.entries(samples).map(([name, values]) => [name, percentileInterval(values)]));
}

/** core/metrics.py `rate_with_ci`: the share of `hits` (booleans), with a 95 % bootstrap interval over patients. */
export function rateWithCi(hits, patients, nBoot = 1000, seed = 0) {
  const numbers = hits.map(Number);
  const samples = Array.from(patientResamples(patients, nBoot, seed), (weight) => weightedMean(numbers, weight));
  return { value: numbers.length ? mean(numbers) : NaN, ci95: percentileInterval(samples) };
}

/** core/metrics.py `reliability_bins`: equal-width bins of the top probability, each with its range, count, mean
 * top probability and share right (null when empty). */
export function reliabilityBins(probs, labels, bins = 15) {
  const confidence = probs.map((row) => Math.max(...row));
  const correct = probs.map((row, i) => argmax(row) === labels[i]);
  const step = 1 / bins; // np.linspace(0, 1, bins + 1): i * step, the last edge exactly 1
  const edges = Array.from({ length: bins + 1 }, (_, i) => (i === bins ? 1 : i * step));
  const out = [];
  for (let b = 0; b < bins; b++) {
    const lo = edges[b], hi = edges[b + 1];
    const inside = confidence.map((c, i) => i).filter((i) => confidence[i] > lo && confidence[i] <= hi);
    out.push({
      lo, hi, count: inside.length,
      confidence: inside.length ? mean(inside.map((i) => confidence[i])) : null,
      accuracy: inside.length ? mean(inside.map((i) => Number(correct[i]))) : null,
    });
  }
  return out;
}

/** core/metrics.py `expected_calibration_error`: sum over bins of |share right - mean top probability| x share of
 * the films. */
export function expectedCalibrationError(probs, labels, bins = 15) {
  const n = labels.length;
  let total = 0;
  for (const b of reliabilityBins(probs, labels, bins)) {
    if (b.count) total += (b.count / n) * Math.abs(/** @type {number} */ (b.accuracy) - /** @type {number} */ (b.confidence));
  }
  return total;
}
