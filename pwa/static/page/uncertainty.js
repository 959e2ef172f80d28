// @ts-check
// The uncertainty band of one result, from model.json's `uncertainty` rule: the browser's copy of
// export/uncertainty.py `band()`, line for line (the rule is chosen at export time on the validation split; the
// browser and the Python predictor must give every file the same band, and a test checks both on the same numbers).

export const KIND = "top_probability_below";

/** "confident", "uncertain", or null: no band for a withheld result (no diagnosis at all) or for a model.json
 * without a rule. An unknown rule kind counts as uncertain: never claim a confidence we cannot check; nor for a film
 * unlike the training films (the rule was measured on films like them). */
export function band(probabilities, withheld, uncertainty, unlikeTraining = false) {
  if (withheld || !uncertainty) return null;
  const rule = uncertainty.rule;
  if (rule?.kind !== KIND || rule.threshold === null || rule.threshold === undefined || unlikeTraining) {
    return "uncertain";
  }
  return Math.max(...probabilities) < rule.threshold ? "uncertain" : "confident";
}

/** The smallest top probability t among `top` such that the results with top >= t number at least `minSupport`
 * and were right at least `target` of the time; null when there is none. The browser's copy of runtime/bands.py
 * `choose_threshold` (a site profile re-chooses the band on the site's films with it: site-calibration.js). */
export function chooseThreshold(top, correct, target = 0.9, minSupport = 10) {
  const candidates = [...new Set(top)].sort((a, b) => a - b); // ascending: the first that qualifies is the smallest
  for (const t of candidates) {
    let n = 0, right = 0;
    top.forEach((value, i) => {
      if (value >= t) {
        n += 1;
        if (correct[i]) right += 1;
      }
    });
    if (n >= minSupport && right / n >= target) return t;
  }
  return null;
}
