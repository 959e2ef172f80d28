// @ts-check
// The results table as CSV (RFC 4180), made in the page and saved with a Blob: nothing is uploaded. What a row
// states comes from verdict.js, as in the table: a withheld file (the chest gate refused it) has an empty prediction
// and band, and `withheld` says why; its probabilities stay in their columns (the model's raw output, for analysis).
// `unlike_training`: a diagnosis given for a film unlike the training films (validate at your site).
// `site_profile`: for a result calibrated by a site profile, "calibrated for <site> (site profile of <n> films,
// <date>)" (what `cxr predict --site-profile` says in its `site_profile.summary`); empty for the model as it comes.
import { downloadBlob } from "./download.js";

function cell(value) {
  const text = value === null || value === undefined ? "" : String(value);
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

/** rows: [{name, probabilities?, verdict?, gate?, oodScore?, lungs?, error?, model?, version?}]. The lung columns
 * (the share of the evidence inside the lung fields, and whether the lung mask was unusable) are empty for models
 * without a lung segmenter. */
export function toCsv(rows, classes) {
  const header = ["file", ...classes.map((c) => `p_${c}`), "prediction", "band", "withheld", "gate", "gate_reason",
    "unlike_training", "ood_score", "lung_evidence", "lung_fallback", "error", "model", "model_version",
    "site_profile"];
  // Free text (file names, messages) must not run as a spreadsheet formula.
  const safe = (text) => (/^[=+\-@\t\r]/.test(text ?? "") ? `'${text}` : text ?? "");
  const lines = [header.map(cell).join(",")];
  for (const r of rows) {
    const done = Array.isArray(r.probabilities) && r.verdict;
    lines.push([
      safe(r.name),
      ...classes.map((_, i) => (done ? r.probabilities[i].toFixed(6) : "")),
      done ? r.verdict.shownClass : "",
      done ? r.verdict.band ?? "" : "",
      done ? r.verdict.withheld : "",
      done && r.gate !== null && r.gate !== undefined ? r.gate.toFixed(4) : "",
      done ? r.verdict.gateReason : "",
      done ? (r.verdict.unlike ? "yes" : "no") : "",
      done ? r.oodScore.toFixed(4) : "",
      done && r.lungs && !r.lungs.fallback ? r.lungs.evidence.toFixed(4) : "",
      done && r.lungs ? (r.lungs.fallback ? "yes" : "no") : "",
      safe(r.error),
      r.model ?? "",
      r.version ?? "",
      done ? safe(r.verdict.site?.summary) : "",
    ].map(cell).join(","));
  }
  return lines.join("\r\n") + "\r\n";
}

export function downloadCsv(text, fileName) {
  downloadBlob(new Blob([text], { type: "text/csv;charset=utf-8" }), fileName);
}
