// @ts-check
// The report of a site validation in the page: the sections of `cxr validate`'s report.md (runtime/site_report.py)
// from the same metrics.json content (site-validation.js): the site's figures beside the model card's, the
// confusion matrix, the confident and uncertain results, reliability before and after, the calibration
// cross-validated by patient, and every file that was skipped. Built with the DOM (no HTML parsed).
import { el, fixed, percent } from "./format.js";

const isNumber = (v) => typeof v === "number" && Number.isFinite(v);
const pct = (v) => (isNumber(v) ? percent(v, 0) : "n/a");
const num = (v, digits = 2) => (isNumber(v) ? fixed(v, digits) : "n/a");

/** "62 % (41–80 %)": a value and its 95 % interval, the interval left out when undefined. */
function withCi(value, interval, format = pct) {
  const ci = Array.isArray(interval) && interval.every(isNumber) ? ` (${format(interval[0])}–${format(interval[1])})`
    : "";
  return format(value) + ci;
}

/**
 * A table in its own scroll box (wide tables scroll on a phone), headed by `caption`.
 * @param {string} caption
 * @param {string[]} head
 * @param {any[][]} rows the first cell of each row heads it
 * @param {{numeric?: number[]}} [options] numeric: the columns aligned as numbers
 */
function table(caption, head, rows, { numeric = [] } = {}) {
  const numericAt = (i) => numeric.includes(i);
  const body = el("table", { className: "card-table" },
    el("caption", { textContent: caption }),
    el("thead", {}, el("tr", {}, head.map((h, i) => el("th", { scope: "col", className: numericAt(i) ? "num" : "",
      textContent: h })))),
    el("tbody", {}, rows.map((row) => el("tr", {}, row.map((cell, i) => (i === 0
      ? el("th", { scope: "row", textContent: String(cell) })
      : el("td", { className: numericAt(i) ? "num" : "", textContent: String(cell) })))))));
  const box = el("div", { className: "table-scroll", tabIndex: 0, role: "region" }, body);
  box.setAttribute("aria-label", caption);
  return box;
}

function overview(m) {
  const films = m.site_figures;
  const card = m.model_card.metrics_test;
  const perClass = Object.entries(films.films_per_class).map(([c, n]) => `${c} ${n}`).join(", ");
  const metrics = films.metrics;
  return [
    el("p", {}, `Model ${m.model.name} ${m.model.version} (${m.model.file}), on `,
      el("strong", { textContent: `${films.films} labelled films of ${films.patients} patients` }),
      ` (${perClass}); ${m.created}.`),
    m.unreadable.length ? el("p", { className: "warn", textContent: `${m.unreadable.length} file(s) could not be ` +
      "read and were skipped: listed at the end." }) : null,
    el("p", {}, "At this site the model is right on ",
      el("strong", { textContent: withCi(metrics.accuracy, metrics.ci95.accuracy) }),
      ` of the films (95 % CI by patient)${card ? `; on its own test split, ${pct(card.accuracy)}.` : "."}`),
  ];
}

function perClass(m) {
  const metrics = m.site_figures.metrics, ci = metrics.ci95;
  const card = m.model_card.metrics_test ?? {};
  const rows = Object.entries(metrics.per_class).map(([c, v]) => {
    const theirs = card.per_class?.[c] ?? {};
    return [c, v.support, withCi(v.recall, ci[`${c}/recall`]), withCi(v.precision, ci[`${c}/precision`]),
      withCi(v.specificity, ci[`${c}/specificity`]), withCi(v.auc, ci[`${c}/auc`], num),
      [pct(theirs.recall), pct(theirs.precision), num(theirs.auc)].join(" / ")];
  });
  rows.push(["all", metrics.n, `accuracy ${withCi(metrics.accuracy, ci.accuracy)}`, "", "",
    `macro ${withCi(metrics.macro_auc, ci.macro_auc, num)}`,
    m.model_card.metrics_test ? `accuracy ${pct(card.accuracy)}, macro AUC ${num(card.macro_auc)}` : ""]);
  return [
    el("h4", { textContent: "Per class" }),
    el("p", { className: "hint", textContent: "Sensitivity, PPV, specificity and one-vs-rest AUC at this site, each " +
      "with its 95 % bootstrap CI by patient; the last column is the model card's test split (sensitivity / PPV / " +
      "AUC). A class the site did not show has no sensitivity or AUC here." }),
    table("Per class at this site", ["class", "films", "sensitivity", "PPV", "specificity", "AUC",
      "model card (test split)"], rows, { numeric: [1, 2, 3, 4, 5] }),
  ];
}

function confusion(m, classes) {
  return [
    el("h4", { textContent: "Confusion matrix" }),
    table("Rows: the label; columns: the model's top class (as it comes)", ["label \\ predicted", ...classes],
      classes.map((c, i) => [c, ...m.site_figures.metrics.confusion[i]]),
      { numeric: classes.map((_, i) => i + 1) }),
  ];
}

function bands(m) {
  const b = m.site_figures.bands;
  const theirs = m.model_card.bands_test ?? {};
  const rule = m.model_card.uncertainty_rule;
  const threshold = rule?.threshold;
  const ruleText = isNumber(threshold) ? `uncertain below a top probability of ${pct(threshold)}`
    : rule ? "no rule: every result uncertain" : "no rule in this model's card";
  const rows = ["confident", "uncertain"].map((name) => [name, b[name].n, withCi(b[name].value, b[name].ci95),
    pct(theirs[name]?.accuracy)]);
  return [
    el("h4", { textContent: "Confident and uncertain results" }),
    el("p", { className: "hint", textContent: `The model's rule (${ruleText}), applied to this site's films: how ` +
      "often each band was right." }),
    table("Each band at this site", ["band", "films", "right (95 % CI)", "model card (test split)"], rows,
      { numeric: [1, 2, 3] }),
    el("p", { textContent: `Given no class at all (withheld): ${b.withheld.n} of ${m.site_figures.films} films, ` +
      `${withCi(b.withheld.value, b.withheld.ci95)}. Shown but marked unlike the training films (always uncertain): ` +
      `${b.unlike_training.n}, ${withCi(b.unlike_training.value, b.unlike_training.ci95)}.` }),
  ];
}

function reliability(m) {
  const before = m.reliability.before, after = m.reliability.after;
  const head = ["top probability", "films", "mean top probability", "right"];
  if (after) head.push("films (calibrated)", "mean top probability (calibrated)", "right (calibrated)");
  const rows = [];
  before.bins.forEach((b, i) => {
    const a = after?.bins[i];
    if (!b.count && !a?.count) return;
    rows.push([`${pct(b.lo)}–${pct(b.hi)}`, b.count, pct(b.confidence), pct(b.accuracy),
      ...(a ? [a.count, pct(a.confidence), pct(a.accuracy)] : [])]);
  });
  return [
    el("h4", { textContent: "Reliability" }),
    el("p", { className: "hint", textContent: "Films grouped by their top probability: a well calibrated model is " +
      "right as often as it says." }),
    table("Reliability at this site", head, rows, { numeric: head.map((_, i) => i).slice(1) }),
    el("p", { textContent: `Expected calibration error: ${num(before.ece, 3)} as it comes` +
      (after ? `, ${num(after.ece, 3)} calibrated (cross-validated).` : ".") }),
  ];
}

function calibration(m, profile) {
  if (!profile) {
    return [el("h4", { textContent: "Site calibration" }),
      el("p", { className: "warn", id: "site-refused" }, "No site profile: ", m.profile_refused)];
  }
  const cv = profile.cross_validated, before = cv.before, after = cv.after;
  const classes = profile.classes;
  const bandCell = (f, name) => `${pct(f[name].accuracy)} of ${f[name].n}`;
  const rows = [
    ["accuracy", withCi(before.accuracy, before.accuracy_ci95), withCi(after.accuracy, after.accuracy_ci95)],
    ["macro AUC", withCi(before.macro_auc, before.macro_auc_ci95, num), withCi(after.macro_auc, after.macro_auc_ci95,
      num)],
    ...classes.map((c) => [`sensitivity ${c}`, pct(before.sensitivity[c]), pct(after.sensitivity[c])]),
    ["mean negative log likelihood", num(before.nll, 3), num(after.nll, 3)],
    ["expected calibration error", num(before.ece, 3), num(after.ece, 3)],
    ["confident results right", bandCell(before, "confident"), bandCell(after, "confident")],
    ["uncertain results right", bandCell(before, "uncertain"), bandCell(after, "uncertain")],
  ];
  const parameters = profile.parameters;
  const offsets = classes.map((c, k) => `${c} ${parameters.offsets[k] >= 0 ? "+" : ""}${fixed(parameters.offsets[k])}`)
    .join(", ");
  const unfitted = classes.filter((c) => !parameters.fitted.classes.includes(c));
  const rule = profile.band?.rule ?? {};
  const bandText = !profile.band ? "no band (the model has no rule)"
    : profile.band.chosen_on === "site" && isNumber(rule.threshold)
      ? `chosen on this site's films: uncertain below ${pct(rule.threshold)}`
      : profile.band.chosen_on === "site" ? "chosen on this site's films: no level reached the target, every result " +
        "is uncertain"
        : `the model's own (fewer than ${profile.prior.min_films_band} films to choose one here)`;
  return [
    el("h4", { textContent: "Site calibration" }),
    el("p", { textContent: `The site profile calibrates this model for ${profile.site}: per-class logit offsets` +
      `${parameters.fitted.temperature ? " and a temperature" : ""}, pulled towards no change, fitted on the ` +
      `${profile.films} films. The figures below are cross-validated by patient (${cv.method}, ${cv.folds} fits): ` +
      "every film was scored by a calibration fitted on the other patients' films only, never on itself." }),
    table("Before and after calibration, on this site's films", ["on this site's films", "as it comes",
      "calibrated (cross-validated)"], rows, { numeric: [1, 2] }),
    el("ul", {},
      el("li", { textContent: `Offsets added to the logits: ${offsets}` + (unfitted.length
        ? ` (${unfitted.join(", ")}: not shown by the site, kept neutral).` : ".") }),
      el("li", { textContent: `Temperature: ${fixed(parameters.temperature)} x the model's ` +
        `${fixed(parameters.model_temperature)}` + (parameters.fitted.temperature ? "." : ` (not fitted: it needs ` +
        `${profile.prior.min_films_temperature} films of 2 classes).`) }),
      el("li", { textContent: `Uncertainty band: ${bandText}.` }),
      el("li", { textContent: "The offsets also carry this set's class mix: give films in the proportions the site " +
        "sees, or expect the calibration to lean towards the classes given most." })),
  ];
}

function unreadable(m) {
  if (!m.unreadable.length) return [];
  return [
    el("h4", { textContent: "Skipped: unreadable files" }),
    table("Files that could not be read", ["file", "label", "reason"],
      m.unreadable.map((u) => [u.file, u.label, u.reason])),
  ];
}

/** Fill `container` with the report of metrics.json's content `m` and the profile (null when it was refused). */
export function renderSiteReport(container, m, profile) {
  const classes = Object.keys(m.site_figures.films_per_class);
  container.replaceChildren(
    el("h3", { id: "site-report-title", tabIndex: -1, textContent: `Site validation: ${m.site}` }),
    ...overview(m), ...perClass(m), ...confusion(m, classes), ...bands(m), ...reliability(m),
    ...calibration(m, profile), ...unreadable(m),
    el("p", { className: "hint", textContent: "Research software, not a medical device. These figures describe " +
      "these films only; a site's acceptance of the tool also needs the clinical review these numbers cannot " +
      "replace." }));
  container.dataset.films = String(m.site_figures.films);
  container.dataset.unreadable = String(m.unreadable.length);
  container.dataset.profile = profile ? "fitted" : "refused";
}
