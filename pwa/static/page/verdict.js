// @ts-check
// What the app states about one result, in one place for the viewer, the table, the CSV, the report and the live
// region, so they cannot disagree:
// - out of distribution: no diagnosis (no class, no band), and why;
// - uncertain: the two leading classes, with equal weight (in the model's class order, not by probability);
// - confident: the top class;
// and the accuracy that results of the same band had on the test split (model.json `uncertainty.bands`).
import { percent } from "./format.js";
import { band } from "./uncertainty.js";

// The OOD score measures distance from the training images, so it fires for non-X-rays and also for real films
// unlike the training data (11% of one unseen hospital's films: model.json `external`); say both.
export const WITHHELD_OOD = "out of distribution: unlike the training X-rays, or not a chest X-ray";

/** {band, withheld, topIndex, topClass, shownClass, leading: [i, j], label, measured} for a worker result. */
export function verdict(result, card) {
  const p = result.probabilities;
  const order = p.map((_, i) => i).sort((a, b) => p[b] - p[a] || a - b);
  const which = band(p, result.ood, card.uncertainty);
  const leading = order.slice(0, 2).sort((a, b) => a - b);
  const topClass = card.classes[order[0]];
  let label = topClass;
  if (result.ood) label = "";
  else if (which === "uncertain") label = `Uncertain: ${leading.map((i) => card.classes[i]).join(" or ")}`;
  return {
    band: which,
    withheld: result.ood ? WITHHELD_OOD : "",
    topIndex: order[0],
    topClass,
    shownClass: result.ood ? "" : topClass, // what the page may call the prediction
    leading,
    label,
    measured: which ? card.uncertainty?.bands?.[which] ?? null : null,
  };
}

function accuracyText(entry) {
  if (!entry?.n) return "no test image fell in this band, so its accuracy is not measured";
  const ci = Array.isArray(entry.ci95) && entry.ci95.every(Number.isFinite)
    ? `; 95 % CI ${percent(entry.ci95[0], 0)}–${percent(entry.ci95[1], 0)}` : "";
  return `right ${percent(entry.accuracy, 0)} of the time on the test images (${entry.correct} of ${entry.n}${ci})`;
}

/** One sentence: what this band's results were worth on the test split, and the rule behind it. */
export function bandSentence(v, card) {
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
  if (v.withheld) {
    return `${result.name}: unlike the chest X-rays the model was trained on (or not a chest X-ray), so no ` +
      "prediction is given.";
  }
  const p = result.probabilities;
  if (v.band === "uncertain") {
    return `${result.name}: uncertain, ${v.leading.map((i) => `${classes[i]} ${percent(p[i])}`).join(" or ")}.`;
  }
  return `${result.name}: most likely ${v.topClass}, ${percent(p[v.topIndex])}${v.band ? `, ${v.band}` : ""}.`;
}
