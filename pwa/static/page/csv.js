// The results table as CSV (RFC 4180), made in the page and saved with a Blob: nothing is uploaded.

function cell(value) {
  const text = value === null || value === undefined ? "" : String(value);
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

/** rows: [{name, probabilities?, className?, ood?, oodScore?, error?, model?, version?}] */
export function toCsv(rows, classes) {
  const header = ["file", ...classes.map((c) => `p_${c}`), "prediction", "not_a_chest_xray", "ood_score", "error",
    "model", "model_version"];
  // Free text (file names, messages) must not run as a spreadsheet formula.
  const safe = (text) => (/^[=+\-@\t\r]/.test(text ?? "") ? `'${text}` : text ?? "");
  const lines = [header.map(cell).join(",")];
  for (const r of rows) {
    const done = Array.isArray(r.probabilities);
    lines.push([
      safe(r.name),
      ...classes.map((_, i) => (done ? r.probabilities[i].toFixed(6) : "")),
      done ? r.className : "",
      done ? (r.ood ? "yes" : "no") : "",
      done ? r.oodScore.toFixed(4) : "",
      safe(r.error),
      r.model ?? "",
      r.version ?? "",
    ].map(cell).join(","));
  }
  return lines.join("\r\n") + "\r\n";
}

export function downloadCsv(text, fileName) {
  const url = URL.createObjectURL(new Blob([text], { type: "text/csv;charset=utf-8" }));
  const link = Object.assign(document.createElement("a"), { href: url, download: fileName });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
