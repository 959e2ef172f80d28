// @ts-check
// The model card, from model.json: what the model is, what it was trained on, how it did on held-out test data
// (per model file, with 95 % confidence intervals, and per source) and on sources it never saw, when it marks a
// result uncertain and how right each band was, how often it flags non-X-rays, its limits and its intended use.
// Built with DOM calls only (no HTML parsing).
import { el, fixed, interval, percent } from "./format.js";

const METRICS = ["precision", "recall", "specificity", "f1", "auc"];

function definitionList(pairs) {
  return el("dl", { className: "facts" },
    pairs.filter((pair) => pair && pair[1] !== undefined && pair[1] !== null && pair[1] !== "")
      .flatMap(([term, value]) => [el("dt", { textContent: term }), el("dd", {}, value)]));
}

function table(caption, head, rows) {
  return el("div", { className: "table-scroll", role: "region", tabIndex: 0, "aria-label": caption },
    el("table", { className: "card-table" },
      el("caption", { textContent: caption }),
      el("thead", {}, el("tr", {},
        head.map((h, i) => el("th", { scope: "col", className: i ? "num" : "", textContent: h })))),
      el("tbody", {}, rows.map((cells) => el("tr", {},
        cells.map((c, i) => (i === 0
          ? el("th", { scope: "row", textContent: c })
          : el("td", { className: "num" }, c))))))));
}

const withCi = (value, ci) => {
  const text = fixed(value);
  const range = interval(ci);
  return range ? el("span", {}, text, el("span", { className: "ci", textContent: ` (${range})` })) : text;
};

/** Images per split, summed over sources and classes (export/card.py split_counts). */
function splitCounts(data) {
  const total = (split) => Object.values(data.counts?.[split] ?? {})
    .reduce((sum, byClass) => sum + Object.values(byClass).reduce((a, b) => a + b, 0), 0);
  return { train: total("train"), val: total("val"), test: total("test") };
}

function trainingData(card) {
  const data = card.training_data ?? {};
  const n = splitCounts(data);
  const section = el("section", {}, el("h3", { textContent: "Training data" }));
  // `images` is the whole prepared set; only the training split trained the model (export/card.py says the same).
  section.append(definitionList([
    ["Sources", (data.sources ?? []).join(", ")],
    ["Images", `${n.train} used for training (${n.val} for validation, ${n.test} for test) from ${data.patients} ` +
      "patients"],
    ["Split", data.split_fractions ? `${data.split_fractions.join(" / ")} (train / val / test, by patient, seed ` +
      `${data.split_seed})` : undefined],
  ]));
  const counts = data.counts ?? {};
  const rows = [];
  for (const split of Object.keys(counts)) {
    for (const [source, byClass] of Object.entries(counts[split])) {
      rows.push([`${split}: ${source}`, ...card.classes.map((c) => String(byClass?.[c] ?? 0))]);
    }
  }
  if (rows.length) {
    section.append(table("Images per split, source and class", ["split: source", ...card.classes], rows));
  }
  return section;
}

function metricsFor(card, file, info) {
  const m = info.metrics_test?.all;
  const section = el("section", {}, el("h3", { textContent: `Test results: ${file} (${info.precision ?? ""})` }));
  if (!m) {
    section.append(el("p", { textContent: "No test metrics in model.json." }));
    return section;
  }
  section.append(definitionList([
    ["Test images", m.n],
    ["Accuracy (95 % CI)", withCi(m.accuracy, m.ci95?.accuracy)],
    ["Macro AUC (95 % CI)", withCi(m.macro_auc, m.ci95?.macro_auc)],
  ]));
  section.append(table(`Per class, ${file} (95 % CI in brackets)`, ["class", ...METRICS, "n"],
    card.classes.map((c) => [c, ...METRICS.map((k) => withCi(m.per_class?.[c]?.[k], m.ci95?.[`${c}/${k}`])),
      String(m.per_class?.[c]?.support ?? "")])));
  const bySource = info.metrics_test?.by_source ?? {};
  if (Object.keys(bySource).length) {
    section.append(table(`Per source, ${file}`, ["source", "n", "accuracy", "macro AUC"],
      Object.entries(bySource).map(([source, s]) => [source, String(s.n), withCi(s.accuracy, s.ci95?.accuracy),
        withCi(s.macro_auc, s.ci95?.macro_auc)])));
  }
  const ood = info.ood_rates ?? {};
  if (Object.keys(ood).length) {
    section.append(table(`"Not a chest X-ray" flags, ${file}`, ["images", "n", "flagged"],
      Object.entries(ood).map(([set, r]) => [set.replace(/_/g, " "), String(r.n ?? ""),
        "rate" in r ? `${percent(r.rate)} flagged` : `${percent(r.rate_not_flagged ?? 0)} not flagged`])));
  }
  return section;
}

/** What the chest gate refuses (docs/gate.md): the figures `cxr gate-train` measured, per kind, with CIs. */
function gateCard(card) {
  const measured = card.gate?.measured?.cross_validated;
  if (!measured) return null;
  return el("section", { id: "gate-card" }, el("h3", { textContent: "What is refused: the chest film check" }),
    table("Cross-validated by patient (each image scored by a gate that never saw its patient)",
      ["kind", "images", "share refused (chest films: withheld)"],
      Object.entries(measured).map(([kind, r]) => [kind.replace(/_/g, " "), String(r.n), withCi(r.share, r.ci95)])));
}

function uncertainty(card) {
  const u = card.uncertainty;
  if (!u) return null;
  const section = el("section", { id: "uncertainty-card" },
    el("h3", { textContent: "When a result is marked uncertain" }),
    el("ul", {}, (u.summary ?? []).map((text) => el("li", { textContent: text }))));
  const rows = [["confident", u.bands?.confident], ["uncertain", u.bands?.uncertain]].map(([name, b]) => [name,
    String(b?.n ?? 0), b?.n ? withCi(b.accuracy, b.ci95) : "not measured"]);
  section.append(table(`Accuracy by band, test split (${u.model_file}; rule chosen on the validation split)`,
    ["band", "n", "accuracy (95 % CI)"], rows));
  return section;
}

/** Scores on sources the model never saw in training or validation (export/external.py): what another hospital
 * may see. Absent when not measured. */
function unseenSources(card) {
  const groups = Object.values(card.external?.groups ?? {});
  if (!groups.length) return null;
  const shownAs = (g) => Object.entries(g.shown ?? {}).filter(([, share]) => share > 0)
    .map(([name, share]) => `${name} ${percent(share, 0)}`).join(", ");
  return el("section", { id: "unseen-sources" }, el("h3", { textContent: "Sources never seen in training" }),
    el("ul", {}, (card.external.summary ?? []).map((text) => el("li", { textContent: text }))),
    table(`Unseen sources (${card.external.model_file}; 95 % CI in brackets)`,
      ["source: class", "images (patients)", "sensitivity", "shown as", "AUC vs other sources"],
      groups.map((g) => [`${g.source}: ${g.label}`, `${g.images} (${g.patients})`,
        withCi(g.sensitivity.value, g.sensitivity.ci95), shownAs(g),
        g.auc_vs_other_sources ? withCi(g.auc_vs_other_sources.auc, g.auc_vs_other_sources.ci95) : "n/a"])));
}

export function renderModelCard(container, card) {
  const calibration = card.calibration ?? {};
  const about = el("section", {}, el("h3", { textContent: "Model" }), definitionList([
    ["Name", card.name], ["Version", card.version], ["Created", card.created],
    ["Architecture", `${card.arch ?? "?"}, ${card.preprocess?.size ?? "?"} px input, global average pooling + one ` +
      "linear layer (Grad-CAM is exact)"],
    ["Weights", card.weights_origin === "none" ? "trained from scratch (no pretrained weights)"
      : `initialised from ${card.weights_origin}`],
    ["Classes", card.classes.join(", ")],
    ["Calibration", `temperature ${fixed(card.temperature)} fitted on ${calibration.fitted_on ?? "?"} ` +
      `(ECE ${fixed(calibration.ece_before)} → ${fixed(calibration.ece_after)})`],
    card.gate ? ["Chest film check", `a gate on the lung segmenter's features refuses, with no diagnosis, what is ` +
      `not a frontal chest radiograph, upright and not inverted (gate below ${card.gate.threshold})`] : null,
    ["Out-of-distribution check", `feature distance above ${fixed(card.ood_threshold, 1)} (the ` +
      `${card.ood_percentile ?? "?"}th percentile of the validation images) ` +
      (card.gate ? "marks a film as unlike the training films: shown, uncertain, validate at your site"
        : "shows the warning")],
    ["Default model file", card.default_model],
    ["int8", card.int8?.note],
  ]));
  const parts = [
    card.demo ? el("p", { className: "demo-banner", textContent: "Demo model: trained on synthetic phantoms." }) : null,
    el("section", {}, el("h3", { textContent: "Intended use" }), el("p", { textContent: card.intended_use ?? "" })),
    el("section", {}, el("h3", { textContent: "Limitations" }),
      el("ul", {}, (card.limitations ?? []).map((text) => el("li", { textContent: text })))),
    card.shortcuts?.summary?.length ? el("section", { id: "known-bias" },
      el("h3", { textContent: "Known bias: source and label" }),
      el("ul", {}, card.shortcuts.summary.map((text) => el("li", { textContent: text })))) : null,
    unseenSources(card),
    gateCard(card),
    uncertainty(card),
    about,
    trainingData(card),
    ...Object.entries(card.files ?? {})
      .sort(([a], [b]) => (a === card.default_model ? -1 : b === card.default_model ? 1 : 0))
      .map(([file, info]) => metricsFor(card, file, info)),
  ];
  const checks = card.verification ?? [];
  if (checks.length) {
    parts.push(el("section", {}, el("h3", { textContent: "Export checks" }),
      el("ul", {}, checks.map((c) => el("li", {
        textContent: `${c.passed ? "passed" : "FAILED"}: ${c.name}: ${fixed(c.measured, 6)} (limit ${c.limit})`,
      })))));
  }
  container.replaceChildren(...parts.filter(Boolean));
}
