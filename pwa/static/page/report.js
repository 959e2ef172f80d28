// @ts-check
// The per-image report, made in the page with no network: a PNG (a 2-D canvas, saved through a download link) and
// the same lines in a printable section (#report, shown only by the print stylesheet). Both come from
// reportLines(), so the saved file and the printout say the same thing.
import { el, fixed, percent } from "./format.js";
import { bandSentence, siteSentence, UNLIKE_TRAINING } from "./verdict.js";

export const DISCLAIMER = "Not a medical device. For research and education only: do not use it for diagnosis, " +
  "treatment or any clinical decision.";
const TITLE = "Chest X-ray triage: single-image report";

/** Evidence in the lungs: when a later model adds result.lungs, its line goes into the report here. */
function lungLines(result) {
  return result.lungs?.summary ? [["Evidence in the lungs", result.lungs.summary]] : [];
}

/** The chest gate (models that carry it: docs/gate.md) and the distance from the training films, in words. */
function gateLines(result, card, v, threshold) {
  const distance = `score ${fixed(result.oodScore, 1)}, threshold ${threshold}`;
  if (!card.gate || result.gate === null || result.gate === undefined) {
    return [["Chest X-ray check", result.ood
      ? `unlike the chest X-rays the model was trained on, or not one (${distance})`
      : `like the chest X-rays the model was trained on (${distance})`]];
  }
  const gate = `gate ${fixed(result.gate, 3)}, threshold ${card.gate.threshold}`;
  return [
    ["Frontal chest film check", v.withheld ? `refused: ${v.withheld} (${gate})` : `passed (${gate})`],
    ["Like the training films", v.withheld ? "" : v.unlike ? `no: ${UNLIKE_TRAINING} (${distance})`
      : `yes (${distance})`],
  ];
}

/** The report as [label, text] pairs. `view`: the viewer's reportView() (revealed?, which heatmap). */
export function reportLines(result, card, view, now = new Date()) {
  const v = result.verdict;
  const shown = !v.withheld || view.revealed;
  const p = result.probabilities;
  let outcome = `${v.topClass}${v.band ? ` (${v.band})` : ""}`;
  if (v.withheld) outcome = `Withheld: ${v.withheld}. No diagnosis is given for this image.`;
  else if (v.band === "uncertain") outcome = `Uncertain: ${v.leading.map((i) => card.classes[i]).join(" or ")}`;
  const threshold = fixed(card.ood_threshold, 1);
  const lines = [
    ["File", `${result.name} (${result.width} x ${result.height} pixels)`],
    ["Date", now.toLocaleString("en-GB", { dateStyle: "long", timeStyle: "medium" })],
    ["Result", outcome],
    ["Uncertainty", v.withheld ? "" : bandSentence(v, card)],
    // A site profile changed the probabilities, the class and the band: the report says so, and for where.
    ["Site calibration", v.site ? `${siteSentence(v)}: the probabilities, the class and the band come from this ` +
      "site's calibration of the model (a site profile, used on this device)" : ""],
    ["Probabilities", shown ? card.classes.map((c, i) => `${c} ${percent(p[i])}`).join(", ") +
      (v.withheld ? " (shown on request: the model's output for an image it was not made for)" : "") : "withheld"],
    ...gateLines(result, card, v, threshold),
    ["Heatmap", view.heat
      ? `Grad-CAM of ${view.heat.className}, ${view.heat.scale}; not a lesion outline` : "withheld"],
    ...lungLines(result),
    ["Model", `${card.name} version ${card.version}, ${result.model} ` +
      `(${card.files?.[result.model]?.precision ?? "?"})`],
    card.demo ? ["Demo model", "trained on synthetic images: its outputs on real X-rays mean nothing"] : null,
    ["Disclaimer", DISCLAIMER],
  ];
  return lines.filter((line) => line && line[1]);
}

/** The printable section: a copy of the picture and the lines. */
export function renderReportSection(container, lines, picture) {
  const parts = [el("p", { className: "report-title", textContent: TITLE })];
  if (picture) {
    const copy = Object.assign(document.createElement("canvas"), { width: picture.width, height: picture.height });
    const context = /** @type {CanvasRenderingContext2D} */ (copy.getContext("2d")); // a new canvas always has one
    context.drawImage(picture, 0, 0);
    copy.setAttribute("role", "img");
    copy.setAttribute("aria-label", "The image with its heatmap");
    parts.push(copy);
  }
  parts.push(el("dl", {}, lines.flatMap(([label, text]) => [
    el("dt", { textContent: label }), el("dd", { textContent: text })])));
  container.replaceChildren(...parts);
}

const WIDTH = 1200, MARGIN = 40, PICTURE = 520, GAP = 32, LINE = 22;
const FONT = "16px system-ui, sans-serif", BOLD = "bold 16px system-ui, sans-serif";

/** Words of `text` in lines no wider than `width` on `context` (a word wider than that gets a line of its own). */
function wrap(context, text, width) {
  const out = [];
  let line = "";
  for (const word of text.split(/\s+/)) {
    const next = line ? `${line} ${word}` : word;
    if (line && context.measureText(next).width > width) {
      out.push(line);
      line = word;
    } else {
      line = next;
    }
  }
  if (line) out.push(line);
  return out;
}

/** The report as a PNG Blob: the picture on the left, the lines on the right, white background. */
export function reportPng(lines, picture) {
  const textX = MARGIN + (picture ? PICTURE + GAP : 0);
  const textWidth = WIDTH - textX - MARGIN;
  const measure = /** @type {CanvasRenderingContext2D} */ (document.createElement("canvas").getContext("2d"));
  measure.font = FONT;
  const blocks = lines.map(([label, text]) => [label, wrap(measure, text, textWidth)]);
  const textHeight = blocks.reduce((h, [, wrapped]) => h + LINE * (1 + wrapped.length) + 10, 0);
  const scale = picture ? Math.min(PICTURE / picture.width, PICTURE / picture.height) : 0;
  const top = MARGIN + 48;
  const height = top + Math.max(textHeight, picture ? picture.height * scale : 0) + MARGIN;
  const canvas = Object.assign(document.createElement("canvas"), { width: WIDTH, height: Math.ceil(height) });
  const context = /** @type {CanvasRenderingContext2D} */ (canvas.getContext("2d"));
  context.fillStyle = "#ffffff";
  context.fillRect(0, 0, canvas.width, canvas.height);
  context.fillStyle = "#12304d";
  context.font = "bold 24px system-ui, sans-serif";
  context.textBaseline = "top";
  context.fillText(TITLE, MARGIN, MARGIN);
  if (picture) context.drawImage(picture, MARGIN, top, picture.width * scale, picture.height * scale);
  let y = top;
  for (const [label, wrapped] of blocks) {
    context.fillStyle = "#57606a";
    context.font = BOLD;
    context.fillText(label, textX, y);
    y += LINE;
    context.fillStyle = "#1b1f24";
    context.font = FONT;
    for (const text of wrapped) {
      context.fillText(text, textX, y);
      y += LINE;
    }
    y += 10;
  }
  return new Promise((resolve, reject) => {
    canvas.toBlob((blob) => (blob ? resolve(blob) : reject(new Error("the browser could not encode the report"))),
      "image/png");
  });
}
