// @ts-check
// How the model does on one site's labelled films, from the films the worker scored: the browser's copy of
// runtime/site_validation.py (`site_metrics`, `band_figures`, `card_figures`, `calibrated_reliability`,
// `validate_site`), giving the same metrics.json and the same site profile as `cxr validate` on the same files.
import { argmax } from "../shared/calibration.js";
import { SITE_CALIBRATION } from "../shared/contract.js";
import { BANDS, crossValidate } from "./site-calibration.js";
import { fitProfile, plain, ProfileError, utcNow } from "./site-profile.js";
import {
  bootstrapCi, classificationMetrics, expectedCalibrationError, rateWithCi, reliabilityBins,
} from "./site-stats.js";

const C = SITE_CALIBRATION;

/** The scored films as arrays (runtime/site_validation.py `arrays`). */
function arrays(scored, classes) {
  return {
    y: scored.map((s) => classes.indexOf(s.label)),
    probabilities: scored.map((s) => s.probabilities),
    logits: scored.map((s) => s.logits),
    patients: scored.map((s) => String(s.patient_id)),
    bands: scored.map((s) => s.band),
    withheld: scored.map((s) => s.withheld),
    unlike: scored.map((s) => s.unlike_training),
  };
}

const where = (mask) => mask.flatMap((m, i) => (m ? [i] : []));

/** Each band's films and accuracy (95 % CI by patient), the share of films given no class at all, and the share
 * marked unlike the training films. */
export function bandFigures(correct, bands, withheld, unlike, patients, nBoot, seed = 0) {
  const rate = (hits, inside) => {
    const chosen = where(inside);
    if (!chosen.length) return { n: 0, value: null, ci95: [null, null] }; // an empty band: nothing to resample
    return { n: chosen.length, ...rateWithCi(chosen.map((i) => hits[i]), chosen.map((i) => patients[i]), nBoot,
      seed) };
  };
  const out = Object.fromEntries(BANDS.map((name) => [name, rate(correct, bands.map((b) => b === name))]));
  const everything = withheld.map(() => true);
  out.withheld = { ...rate(withheld, everything), n: withheld.filter(Boolean).length };
  out.unlike_training = { ...rate(unlike, everything), n: unlike.filter(Boolean).length };
  return out;
}

/** The model card's own figures for this model file: its test split's metrics and bands (null where absent). */
export function cardFigures(card, modelFile) {
  const files = card.files ?? {};
  const entry = (files[modelFile] && Object.keys(files[modelFile]).length ? files[modelFile] : null)
    ?? files[card.default_model ?? ""] ?? {};
  const uncertainty = card.uncertainty ?? {};
  return { metrics_test: entry.metrics_test?.all ?? null, bands_test: uncertainty.bands ?? null,
    uncertainty_rule: uncertainty.rule ?? null };
}

/** The site's figures, the model as it comes: metrics with their CIs, bands, reliability, per class counts. */
export function siteMetrics(scored, card, nBoot = C.n_boot, seed = C.seed) {
  const classes = card.classes;
  const a = arrays(scored, classes);
  const correct = a.probabilities.map((p, i) => argmax(p) === a.y[i]);
  return {
    films: a.y.length, patients: new Set(a.patients).size,
    films_per_class: Object.fromEntries(classes.map((c, k) => [c, a.y.filter((v) => v === k).length])),
    metrics: { ...classificationMetrics(a.y, a.probabilities, classes),
      ci95: bootstrapCi(a.y, a.probabilities, a.patients, classes, nBoot, seed) },
    bands: bandFigures(correct, a.bands, a.withheld, a.unlike, a.patients, nBoot, seed),
    reliability: { bins: reliabilityBins(a.probabilities, a.y, C.reliability_bins),
      ece: expectedCalibrationError(a.probabilities, a.y, C.reliability_bins) },
  };
}

/** Reliability of the cross-validated calibrated probabilities: what the reliability table shows after. */
export function calibratedReliability(scored, card, seed = C.seed) {
  const a = arrays(scored, card.classes);
  const checked = crossValidate(a.logits, a.y, a.patients, a.withheld, card, seed, a.unlike);
  return { bins: reliabilityBins(checked.probabilities, a.y, C.reliability_bins),
    ece: expectedCalibrationError(checked.probabilities, a.y, C.reliability_bins) };
}

/**
 * metrics.json's content and the site profile (null when the films cannot support one: `profile_refused` says
 * why), from the scored films: runtime/site_validation.py `validate_site` after its scoring loop.
 * @param {any[]} scored {file, label, patient_id, logits, probabilities, top_class, band, withheld, unlike_training}
 * @param {any[]} unreadable {file, label, reason}
 * @param {any} card model.json
 * @param {{site: string, data: string, modelFile: string, nBoot?: number, seed?: number}} options
 */
export async function validateSite(scored, unreadable, card, options) {
  const { site, data, modelFile, nBoot = C.n_boot, seed = C.seed } = options;
  if (!scored.length) {
    const reasons = unreadable.slice(0, 3).map((u) => `${u.file}: ${u.reason}`).join("; ");
    throw new ProfileError(`none of the ${unreadable.length} films could be read (${reasons})`);
  }
  const sha256 = card.files?.[modelFile]?.sha256 ?? "";
  const a = arrays(scored, card.classes);
  const created = utcNow();
  /** @type {any} */
  const metrics = {
    site, data, created,
    model: { name: card.name, version: card.version, file: modelFile, sha256 },
    site_figures: siteMetrics(scored, card, nBoot, seed),
    model_card: cardFigures(card, modelFile),
    unreadable,
  };
  metrics.reliability = { before: metrics.site_figures.reliability };
  let profile = null;
  try {
    profile = await fitProfile(a.logits, scored.map((s) => s.label), a.patients, card, site, {
      modelSha256: sha256, withheld: a.withheld, unlikeTraining: a.unlike, nBoot, seed, created });
  } catch (e) {
    if (!(e instanceof ProfileError)) throw e;
    metrics.profile_refused = e.message;
    metrics.calibration = null;
  }
  if (profile) {
    metrics.profile_refused = null;
    metrics.calibration = profile.cross_validated;
    metrics.reliability.after = calibratedReliability(scored, card, seed);
  }
  metrics.scored = scored.map((s) => Object.fromEntries(["file", "label", "patient_id", "logits", "probabilities",
    "top_class", "band", "withheld", "unlike_training"].map((k) => [k, s[k]])));
  return { metrics: plain(metrics), profile };
}
