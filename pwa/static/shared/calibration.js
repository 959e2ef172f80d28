// @ts-check
// The one formula of a site profile (docs/site.md), shared by the page (fitting and cross-validating a profile:
// page/site-calibration.js) and the inference worker (applying one to every result: worker/worker.js):
//
//     p = softmax((logits + offsets) / (T * t))
//
// logits: the graph's `logits` output (before any temperature); T: model.json `temperature`; t: the profile's
// `parameters.temperature`; offsets: its `parameters.offsets`. The browser's copy of runtime/site_calibration.py
// `calibrated_probabilities`, line for line, in float64 (JavaScript numbers).

/** softmax((logits + offsets) / (modelTemperature * siteTemperature)) of one film's logits. */
export function calibratedProbabilities(logits, offsets, modelTemperature, siteTemperature = 1) {
  const scale = modelTemperature * siteTemperature;
  const u = Array.from(logits, (z, k) => (z + offsets[k]) / scale);
  const top = Math.max(...u); // the same softmax, without overflow
  const e = u.map((v) => Math.exp(v - top));
  const total = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / total);
}

/** The index of the largest value, the first one on a tie (numpy's argmax). */
export function argmax(values) {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
  return best;
}
