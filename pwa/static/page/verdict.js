// @ts-check
// What the app states about one result, in one place for the viewer, the table, the CSV, the report and the live
// region, so they cannot disagree:
// - withheld (the chest gate refused the image: not a frontal chest film, inverted, upside down, rotated): no
//   diagnosis (no class, no band), and why;
// - unlike the training films (the OOD distance, with a gate): the diagnosis, uncertain, with "validate at your site";
// - uncertain: the two leading classes, with equal weight (in the model's class order, not by probability);
// - confident: the top class;
// and the accuracy that results of the same band had on the test split (model.json `uncertainty.bands`).
//
// A result calibrated by a site profile (worker.js applied the profile's offsets and temperature; app.js attached
// `siteProfile`: its site, films, date, summary, band rule and cross-validated figures) takes its band from the
// profile's rule, as runtime/predictor.py does with `--site-profile`, and its band's accuracy from the profile's
// cross-validated figures at that site; every sentence below then says that it is calibrated, and for where.
import { percent } from "./format.js";
import { band } from "./uncertainty.js";

// Without a gate the distance is all there is, and it fires for non-X-rays and for unfamiliar real films alike.
export const WITHHELD_OOD = "out of distribution: unlike the training X-rays, or not a chest X-ray";
export const UNLIKE_TRAINING = "unlike the films the model was trained on: validate at your site before relying on " +
  "this result";
const FALLBACK_MESSAGE = "not a frontal chest radiograph";

/** The browser's copy of runtime/gate.py `decide`, line for line: {withheld, gate_reason, unlike_training}. */
export function decide(card, gate, gateReason, ood) {
  const spec = card.gate;
  if (!spec || gate === null || gate === undefined) {
    return { withheld: ood ? WITHHELD_OOD : null, gate_reason: null, unlike_training: false };
  }
  if (gate < spec.threshold) {
    const reason = spec.reasons[Math.trunc(gateReason)];
    return { withheld: spec.messages[reason] ?? FALLBACK_MESSAGE, gate_reason: reason, unlike_training: false };
  }
  return { withheld: null, gate_reason: null, unlike_training: Boolean(ood) };
}

/** {band, withheld, gateReason, unlike, topIndex, topClass, shownClass, leading: [i, j], label, measured, site} for
 * a worker result (`site`: the site profile that calibrated it, or null). */
export function verdict(result, card) {
  const p = result.probabilities;
  const order = p.map((_, i) => i).sort((a, b) => p[b] - p[a] || a - b);
  const d = decide(card, result.gate, result.gateReason, result.ood);
  const withheld = d.withheld ?? "";
  const site = result.siteProfile ?? null;
  const which = band(p, Boolean(withheld), site ? site.band : card.uncertainty, d.unlike_training);
  const leading = order.slice(0, 2).sort((a, b) => a - b);
  const topClass = card.classes[order[0]];
  let label = topClass;
  if (withheld) label = "";
  else if (which === "uncertain") label = `Uncertain: ${leading.map((i) => card.classes[i]).join(" or ")}`;
  return {
    band: which,
    withheld,
    gateReason: d.gate_reason ?? "",
    unlike: d.unlike_training,
    topIndex: order[0],
    topClass,
    shownClass: withheld ? "" : topClass, // what the page may call the prediction
    leading,
    label,
    measured: which ? (site ? site.measured?.[which] : card.uncertainty?.bands?.[which]) ?? null : null,
    site,
  };
}

/** "Calibrated for St Elsewhere (site profile of 40 films, 2026-12-08)": the sentence every calibrated result
 * carries; "" for one that is not. */
export const siteSentence = (v) => (v.site ? v.site.summary.replace(/^c/, "C") : "");

/** A calibrated result's band sentence: the profile's rule and how right that band was at the site,
 * cross-validated by patient. */
function siteBandSentence(v) {
  const site = v.site;
  const rule = site.band;
  const entry = v.measured;
  const where = `${site.site}'s films`;
  const measured = entry?.n
    ? `right ${percent(entry.accuracy, 0)} of the time on ${where} (${entry.n} films, cross-validated by patient)`
    : `not measured on ${where} (none fell in this band)`;
  const threshold = rule?.rule?.threshold;
  const chosen = rule?.chosen_on === "site" ? `chosen on ${where}` : "the model's own";
  if (threshold === null || threshold === undefined) {
    return `With this site profile's rule (${chosen}) no confidence level reached ` +
      `${percent(rule?.target_accuracy ?? 0.9, 0)} correct results, so every result is marked uncertain; such ` +
      `results were ${measured}.`;
  }
  return v.band === "uncertain"
    ? `Results with a calibrated top probability below ${percent(threshold)} (${chosen}) are marked uncertain: they ` +
      `were ${measured}.`
    : `Results with a calibrated top probability of ${percent(threshold)} or more (${chosen}) were ${measured}.`;
}

function accuracyText(entry) {
  if (!entry?.n) return "no test image fell in this band, so its accuracy is not measured";
  const ci = Array.isArray(entry.ci95) && entry.ci95.every(Number.isFinite)
    ? `; 95 % CI ${percent(entry.ci95[0], 0)}–${percent(entry.ci95[1], 0)}` : "";
  return `right ${percent(entry.accuracy, 0)} of the time on the test images (${entry.correct} of ${entry.n}${ci})`;
}

/** One sentence: what this band's results were worth on the test split, and the rule behind it. */
export function bandSentence(v, card) {
  if (v.band && v.site) return siteBandSentence(v);
  const u = card.uncertainty;
  if (!v.band || !u) return "";
  const threshold = u.rule?.threshold;
  if (threshold === null || threshold === undefined) {
    return `This model reached ${percent(u.target_accuracy, 0)} correct results at no confidence level on its ` +
      `validation images, so every result is marked uncertain. Its results were ${accuracyText(v.measured)}.`;
  }
  return v.band === "uncertain"
    ? `Results with a top probability below ${percent(threshold)} are marked uncertain: they were ` +
      `${accuracyText(v.measured)}.`
    : `Results with a top probability of ${percent(threshold)} or more were ${accuracyText(v.measured)}.`;
}

/** The live region's words for a shown result: the prediction and its band, or why there is none. */
export function announcement(result, v, classes) {
  if (result.error) return `${result.name} could not be read: ${result.error}`;
  const site = v.site ? ` ${siteSentence(v)}.` : "";
  if (v.withheld) return `${result.name}: ${v.withheld}, so no prediction is given.${site}`;
  const p = result.probabilities;
  const unlike = v.unlike ? ` It is ${UNLIKE_TRAINING}.` : "";
  if (v.band === "uncertain") {
    return `${result.name}: uncertain, ${v.leading.map((i) => `${classes[i]} ${percent(p[i])}`).join(" or ")}.` +
      unlike + site;
  }
  return `${result.name}: most likely ${v.topClass}, ${percent(p[v.topIndex])}${v.band ? `, ${v.band}` : ""}.` + site;
}
