// @ts-check
// Site calibration, the maths: the browser's copy of runtime/site_calibration.py, function for function, so that a
// profile fitted in the app is the profile `cxr validate` fits on the same films (docs/site.md):
//
// - the fit: per-class logit offsets (of the classes the films show) and, from 30 films of 2 classes, log t,
//   minimising  sum_i -log p_i[y_i] + OFFSET_PRIOR/2 sum_k (offset_k / T)^2 + TEMPERATURE_PRIOR/2 (log t)^2
//   by the same damped Newton steps with the same backtracking and the same stopping rules;
// - the band re-chosen on the site's films (runtime/bands.py `choose_threshold`) from 50 films on;
// - the folds by patient (leave one patient out up to 30 patients, else 10 folds dealt out in numpy's seeded order)
//   and the cross-validated figures, with the patient bootstrap of site-stats.js.
//
// The constants come from the Python side through the generated contract.js, so the two cannot drift apart.
import { argmax, calibratedProbabilities } from "../shared/calibration.js";
import { SITE_CALIBRATION } from "../shared/contract.js";
import { NumpyRandom } from "./numpy-random.js";
import {
  classScores, expectedCalibrationError, macroAuc, mean, patientResamples, percentileInterval, uniqueInverse,
  weightedMean,
} from "./site-stats.js";
import { band, chooseThreshold, KIND } from "./uncertainty.js";

export const BANDS = ["confident", "uncertain"];
const C = SITE_CALIBRATION;

// --- small dense linear algebra (a 3-4 parameter problem) ------------------------------------------------------

/** The smallest eigenvalue of a symmetric matrix (np.linalg.eigvalsh(...).min()), by cyclic Jacobi rotations. */
export function smallestEigenvalue(matrix) {
  const n = matrix.length;
  const a = matrix.map((row) => row.slice());
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0;
    for (let p = 0; p < n; p++) for (let q = p + 1; q < n; q++) off += a[p][q] * a[p][q];
    if (off === 0 || !Number.isFinite(off)) break;
    for (let p = 0; p < n; p++) {
      for (let q = p + 1; q < n; q++) {
        if (a[p][q] === 0) continue;
        const theta = (a[q][q] - a[p][p]) / (2 * a[p][q]);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1), s = t * c;
        for (let k = 0; k < n; k++) { // A <- J^T A J, columns then rows
          const akp = a[k][p], akq = a[k][q];
          a[k][p] = c * akp - s * akq;
          a[k][q] = s * akp + c * akq;
        }
        for (let k = 0; k < n; k++) {
          const apk = a[p][k], aqk = a[q][k];
          a[p][k] = c * apk - s * aqk;
          a[q][k] = s * apk + c * aqk;
        }
      }
    }
  }
  return Math.min(...a.map((row, i) => row[i]));
}

/** x with A x = b (np.linalg.solve: LU with partial pivoting). */
export function solve(matrix, rhs) {
  const n = rhs.length;
  const a = matrix.map((row, i) => [...row, rhs[i]]);
  for (let col = 0; col < n; col++) {
    let pivot = col;
    for (let r = col + 1; r < n; r++) if (Math.abs(a[r][col]) > Math.abs(a[pivot][col])) pivot = r;
    [a[col], a[pivot]] = [a[pivot], a[col]];
    for (let r = col + 1; r < n; r++) {
      const f = a[r][col] / a[col][col];
      for (let k = col; k <= n; k++) a[r][k] -= f * a[col][k];
    }
  }
  const x = new Array(n).fill(0);
  for (let r = n - 1; r >= 0; r--) {
    let s = a[r][n];
    for (let k = r + 1; k < n; k++) s -= a[r][k] * x[k];
    x[r] = s / a[r][r];
  }
  return x;
}

const dot = (a, b) => a.reduce((s, v, i) => s + v * b[i], 0);

// --- the fit ---------------------------------------------------------------------------------------------------

/** The penalised negative log likelihood, its gradient and Hessian in (offsets of `free`, log t):
 * runtime/site_calibration.py `_objective`. */
export function objective(params, z, y, free, fitT, T) {
  const n = z.length, k = z[0].length;
  const b = new Array(k).fill(0);
  free.forEach((c, j) => { b[c] = params[j]; });
  const s = fitT ? params[params.length - 1] : 0;
  const a = Math.exp(-s) / T;
  const u = z.map((row) => row.map((v, c) => (v + b[c]) * a));
  const logP = u.map((row) => {
    const top = Math.max(...row);
    const lse = Math.log(row.reduce((acc, v) => acc + Math.exp(v - top), 0));
    return row.map((v) => v - top - lse);
  });
  const p = logP.map((row) => row.map(Math.exp));
  const g = p.map((row, i) => row.map((v, c) => v - (c === y[i] ? 1 : 0))); // d nll_i / d u_i
  let nll = 0;
  for (let i = 0; i < n; i++) nll += logP[i][y[i]];
  const prior = b.reduce((acc, v) => acc + (v / T) ** 2, 0);
  const value = -nll + (C.offset_prior / 2) * prior + (C.temperature_prior / 2) * s ** 2;
  // d u / d b = a, d u / d s = -u; J_i = diag(p_i) - p_i p_i^T is d p_i / d u_i.
  const gSum = new Array(k).fill(0);
  const jacSum = Array.from({ length: k }, () => new Array(k).fill(0));
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < k; c++) {
      gSum[c] += g[i][c];
      for (let l = 0; l < k; l++) jacSum[c][l] += (c === l ? p[i][c] : 0) - p[i][c] * p[i][l];
    }
  }
  const gradB = gSum.map((v, c) => a * v + (C.offset_prior * b[c]) / T ** 2);
  const hessBB = jacSum.map((row, c) => row.map((v, l) => a ** 2 * v + (c === l ? C.offset_prior / T ** 2 : 0)));
  const grad = free.map((c) => gradB[c]);
  const hess = free.map((c) => free.map((l) => hessBB[c][l]));
  if (fitT) {
    let gu = 0, uju = 0;
    const sideSum = new Array(k).fill(0);
    for (let i = 0; i < n; i++) {
      for (let c = 0; c < k; c++) {
        let ju = 0; // (J_i u_i)_c
        for (let l = 0; l < k; l++) ju += ((c === l ? p[i][c] : 0) - p[i][c] * p[i][l]) * u[i][l];
        gu += g[i][c] * u[i][c];
        uju += u[i][c] * ju;
        sideSum[c] += ju + g[i][c];
      }
    }
    const gradS = -gu + C.temperature_prior * s;
    const hessSS = uju + gu + C.temperature_prior;
    const hessBS = free.map((c) => -a * sideSum[c]);
    grad.push(gradS);
    hess.forEach((row, j) => row.push(hessBS[j]));
    hess.push([...hessBS, hessSS]);
  }
  return { value, grad, hess };
}

/** {offsets [K], t, free: the classes whose offset was fitted}: runtime/site_calibration.py `fit_parameters`, the
 * penalised fit by damped Newton steps with backtracking. A class absent from `labels` keeps offset 0. */
export function fitParameters(logits, labels, modelTemperature, fitTemperature, maxSteps = 200) {
  const free = [...new Set(labels)].sort((a, b) => a - b);
  let params = new Array(free.length + (fitTemperature ? 1 : 0)).fill(0);
  let { value, grad, hess } = objective(params, logits, labels, free, fitTemperature, modelTemperature);
  for (let iteration = 0; iteration < maxSteps; iteration++) {
    const lowest = smallestEigenvalue(hess);
    if (lowest <= 1e-9) { // not convex here (log t): damp towards a gradient step
      hess = hess.map((row, i) => row.map((v, j) => v + (i === j ? 1e-6 - lowest : 0)));
    }
    const step = solve(hess, grad).map((v) => -v);
    const factor = Math.min(1, 2 / Math.max(Math.max(...step.map(Math.abs)), 1e-300)); // at most 2 per step
    for (let i = 0; i < step.length; i++) step[i] *= factor;
    let scale = 1;
    let candidate, next;
    const slope = dot(grad, step);
    for (;;) {
      candidate = params.map((v, i) => v + scale * step[i]);
      next = objective(candidate, logits, labels, free, fitTemperature, modelTemperature);
      if ((Number.isFinite(next.value) && next.value <= value + 1e-4 * scale * slope) || scale < 1e-8) break;
      scale /= 2;
    }
    if (!Number.isFinite(next.value) || next.value > value) break; // no step lowers it: the minimum, to rounding
    params = candidate;
    ({ value, grad, hess } = next);
    if (Math.max(...step.map((v) => Math.abs(scale * v))) < 1e-10) break;
  }
  const offsets = new Array(logits[0].length).fill(0);
  free.forEach((c, j) => { offsets[c] = params[j]; });
  const t = fitTemperature ? Math.exp(params[params.length - 1]) : 1;
  return { offsets, t, free };
}

/** The model's own rule (model.json `uncertainty`) as a site profile carries it; null for a model without one. */
export function modelRule(uncertainty) {
  if (!uncertainty || !Object.keys(uncertainty).length) return null;
  const given = uncertainty.rule && Object.keys(uncertainty.rule).length ? uncertainty.rule : null;
  const rule = { ...(given ?? { kind: KIND, threshold: null }) };
  const has = (key) => Object.hasOwn(uncertainty, key);
  return {
    rule, chosen_on: "model",
    target_accuracy: has("target_accuracy") ? uncertainty.target_accuracy : C.target_accuracy,
    min_support: has("min_support") ? uncertainty.min_support : C.min_support,
    target_reached: has("target_reached") ? uncertainty.target_reached
      : rule.threshold !== null && rule.threshold !== undefined,
  };
}

/** The rule re-chosen on the site's films (their calibrated probabilities) when MIN_FILMS_BAND of them are within
 * its reach (not `outside`: given no class, or unlike the training films); otherwise the model's own. */
export function siteRule(probabilities, labels, outside, uncertainty) {
  const kept = outside.map((o, i) => (o ? -1 : i)).filter((i) => i >= 0);
  /** @type {any} */
  let base = modelRule(uncertainty);
  if (kept.length < C.min_films_band) return base;
  base = base ?? { target_accuracy: C.target_accuracy, min_support: C.min_support };
  const top = kept.map((i) => Math.max(...probabilities[i]));
  const correct = kept.map((i) => argmax(probabilities[i]) === labels[i]);
  const threshold = chooseThreshold(top, correct, base.target_accuracy, base.min_support);
  return { ...base, rule: { kind: KIND, threshold }, chosen_on: "site", target_reached: threshold !== null,
    films: kept.length };
}

/** The whole procedure on some films: offsets, a temperature when they support one, and the rule.
 * {offsets, temperature, band, fittedClasses, fittedTemperature}. */
export function fit(logits, labels, outside, card) {
  const fitT = labels.length >= C.min_films_temperature && new Set(labels).size >= 2;
  const { offsets, t, free } = fitParameters(logits, labels, card.temperature, fitT);
  const probabilities = logits.map((z) => calibratedProbabilities(z, offsets, card.temperature, t));
  return { offsets, temperature: t, band: siteRule(probabilities, labels, outside, card.uncertainty ?? null),
    fittedClasses: free, fittedTemperature: fitT };
}

/** Film indices of each fold, a patient's films always in one fold, and the method in words:
 * runtime/site_calibration.py `patient_folds` (numpy's permutation from numpy-random.js beyond 30 patients). */
export function patientFolds(labels, patients, seed = 0) {
  const { unique, inverse } = uniqueInverse(patients.map(String));
  if (unique.length <= C.leave_one_out_up_to) {
    return { folds: unique.map((_, u) => inverse.flatMap((v, i) => (v === u ? [i] : []))),
      method: "leave-one-patient-out" };
  }
  const first = unique.map((_, u) => inverse.indexOf(u));
  const shuffled = new NumpyRandom(seed).permutation(unique.length);
  // A stable sort by the label of each patient's first film (np.argsort(..., kind="stable")).
  const order = shuffled.map((u, position) => ({ u, position }))
    .sort((a, b) => labels[first[a.u]] - labels[first[b.u]] || a.position - b.position).map((e) => e.u);
  const foldOf = new Array(unique.length);
  order.forEach((u, j) => { foldOf[u] = j % C.folds; });
  const folds = Array.from({ length: C.folds }, (_, f) => inverse.flatMap((u, i) => (foldOf[u] === f ? [i] : [])));
  return { folds, method: `${C.folds}-fold by patient` };
}

/** Every film scored by a calibration fitted on the other patients' films only: {method, folds (their number),
 * probabilities, bands}. runtime/site_calibration.py `cross_validate`. */
/**
 * @param {number[][]} logits
 * @param {number[]} labels
 * @param {string[]} patients
 * @param {boolean[]} withheld
 * @param {any} card
 * @param {number} [seed]
 * @param {boolean[] | null} [unlikeTraining]
 */
export function crossValidate(logits, labels, patients, withheld, card, seed = 0, unlikeTraining = null) {
  const unlike = unlikeTraining ?? labels.map(() => false);
  const { folds, method } = patientFolds(labels, patients, seed);
  const probabilities = new Array(labels.length);
  const bands = new Array(labels.length).fill(null);
  for (const heldOut of folds) {
    const out = new Set(heldOut);
    const rest = labels.map((_, i) => i).filter((i) => !out.has(i));
    const calibration = fit(rest.map((i) => logits[i]), rest.map((i) => labels[i]),
      rest.map((i) => withheld[i] || unlike[i]), card);
    for (const i of heldOut) {
      probabilities[i] = calibratedProbabilities(logits[i], calibration.offsets, card.temperature,
        calibration.temperature);
      bands[i] = band(probabilities[i], withheld[i], calibration.band, unlike[i]);
    }
  }
  return { method, folds: folds.length, probabilities, bands };
}

/** What a calibration is judged by on some films: accuracy and macro AUC (95 % CI by patient), each class's
 * sensitivity, mean negative log likelihood, ECE (10 bins), each band's films and accuracy.
 * runtime/site_calibration.py `figures`. */
export function figures(labels, probabilities, bands, patients, classes, nBoot = 1000, seed = 0) {
  const correct = probabilities.map((p, i) => argmax(p) === labels[i]);
  const right = correct.map(Number);
  const scores = classScores(probabilities, classes.length);
  /** @type {{accuracy: number[], macro_auc: number[]}} */
  const samples = { accuracy: [], macro_auc: [] };
  for (const weight of patientResamples(patients, nBoot, seed)) { // each film's count in the resample
    samples.accuracy.push(weightedMean(right, weight));
    samples.macro_auc.push(macroAuc(labels, probabilities, weight, scores));
  }
  const share = (indices) => (indices.length ? mean(indices.map((i) => Number(correct[i]))) : null);
  const all = labels.map((_, i) => i);
  const out = {
    films: labels.length,
    accuracy: share(all), accuracy_ci95: percentileInterval(samples.accuracy),
    macro_auc: macroAuc(labels, probabilities), macro_auc_ci95: percentileInterval(samples.macro_auc),
    sensitivity: Object.fromEntries(classes.map((c, k) => [c, share(all.filter((i) => labels[i] === k))])),
    nll: -mean(labels.map((y, i) => Math.log(Math.max(probabilities[i][y], 1e-12)))),
    ece: expectedCalibrationError(probabilities, labels, 10),
  };
  for (const name of BANDS) {
    const inside = all.filter((i) => bands[i] === name);
    out[name] = { n: inside.length, accuracy: share(inside) };
  }
  return out;
}
