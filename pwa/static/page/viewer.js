// @ts-check
// The viewer: what the app states about one file (verdict.js), the image with the chosen class's heatmap over it,
// the probabilities and the heatmap controls. Pictures arrive as ImageBitmaps from the worker.
//
// Three states (data-state on the section):
// - "error": the file could not be read. Only the message; no picture, no probabilities, no heatmap controls.
// - "withheld": the chest gate refused it (verdict.js). Why, the image without a heatmap, and a button that shows
//   the model's output anyway (for this file only: the next file starts withheld again).
// - "shown": the prediction (or "uncertain" with the two leading classes), the band's measured accuracy,
//   probabilities, heatmap.
// A result calibrated by a site profile says so under the verdict (#site-note), in every state but "error".
import { el, percent } from "./format.js";
import { bandSentence, siteSentence } from "./verdict.js";

const SCALES = {
  weighted: {
    high: "strongest in this image",
    note: "Colour: how strongly a region drove the class, times the class's probability, on one scale for all " +
      "classes of this image. A class the model finds unlikely stays dark.",
    short: "weighted by the class probability",
  },
  own: {
    high: "this class's maximum",
    note: "Colour: each class scaled to its own maximum. Even a class with a tiny probability shows a bright " +
      "spot: compare where, not how strong.",
    short: "each class to its own maximum",
  },
};

export class Viewer {
  /**
   * @param {HTMLElement} root the viewer's section
   * @param {any} card model.json
   * @param {{onReveal?: (result: any) => void}} [options] onReveal: the user asked to see a withheld output
   */
  constructor(root, card, { onReveal } = {}) {
    this.root = root;
    this.card = card;
    this.classes = card.classes;
    const $ = (selector) => root.querySelector(selector);
    this.imageCanvas = $("#image-canvas");
    this.heatCanvas = $("#heat-canvas");
    this.outlineCanvas = $("#outline-canvas");
    this.imageContext = this.imageCanvas.getContext("bitmaprenderer");
    this.heatContext = this.heatCanvas.getContext("bitmaprenderer");
    this.outlineContext = this.outlineCanvas.getContext("bitmaprenderer");
    this.outlineToggle = $("#lung-outline");
    this.outlineControl = $("#lung-outline-control");
    this.figure = $("#stage-figure");
    this.details = $("#viewer-details");
    this.caption = $("#viewer-caption");
    this.prediction = $("#prediction");
    this.bandNote = $("#band-note");
    this.evidence = $("#evidence");
    this.probabilities = $("#probabilities tbody");
    this.oodBox = $("#ood-box");
    this.oodReason = $("#ood-reason");
    this.unlikeNote = $("#unlike-note");
    this.siteNote = $("#site-note");
    this.probabilitiesCaption = $("#probabilities caption");
    this.revealButton = $("#reveal");
    this.error = $("#viewer-error");
    this.actions = $("#report-actions");
    this.classSelect = $("#heat-class");
    this.scaleSelect = $("#heat-scale");
    this.scaleNote = $("#heat-scale-note");
    this.colorbarHigh = $("#colorbar-high");
    this.opacity = $("#opacity");
    this.opacityValue = $("#opacity-value");
    this.opacity.addEventListener("input", () => this.applyOpacity());
    this.scaleSelect.addEventListener("change", () => this.describeScale());
    this.outlineToggle.addEventListener("change", () => this.applyOutline());
    this.revealButton.addEventListener("click", () => {
      this.revealed = true;
      this.render();
      this.prediction.focus(); // the button is gone: focus the output it revealed
      onReveal?.(this.result);
    });
    this.applyOpacity();
    this.describeScale();
    /** @type {any} the shown file's result (worker.js `classify`), with its verdict */
    this.result = null;
    this.revealed = false;
    /** @type {{width: number, height: number} | null} the picture's size; null: no picture */
    this.size = null;
  }

  applyOpacity() {
    const value = Number(this.opacity.value);
    this.heatCanvas.style.opacity = String(value / 100);
    this.opacityValue.textContent = `${value} %`;
  }

  describeScale() {
    this.scaleNote.textContent = SCALES[this.scale].note;
    this.colorbarHigh.textContent = SCALES[this.scale].high;
    this.labelCanvas();
  }

  /** "weighted" (default) or "own": how the worker scales the heatmap (worker/heatmap.js). */
  get scale() {
    return this.scaleSelect.value in SCALES ? this.scaleSelect.value : "weighted";
  }

  /** The class whose heatmap is shown: the predicted one unless the user chose another. */
  heatClass(result = this.result) {
    const choice = this.classSelect.value;
    return choice === "predicted" ? result.predicted : Number(choice);
  }

  /** A withheld result (verdict.js) whose output the user has not asked to see. */
  get withheld() {
    return Boolean(this.result && !this.result.error && this.result.verdict?.withheld && !this.revealed);
  }

  /**
   * @param {any} result the file's result (worker.js `classify`), with its verdict
   * @param {{image: ImageBitmap, heat: ImageBitmap, outline?: ImageBitmap} | null} pictures null: none yet
   */
  show(result, pictures) {
    if (result !== this.result) {
      // A new file starts from the defaults: its own predicted class, its output withheld if it is OOD.
      this.revealed = false;
      this.classSelect.value = "predicted";
    }
    this.result = result;
    this.root.hidden = false;
    this.root.dataset.file = result.name;
    this.root.dataset.ood = String(Boolean(result.ood));
    this.render();
    if (result.error) this.clearPictures();
    else if (pictures) this.setPictures(pictures.image, pictures.heat, pictures.outline);
  }

  render() {
    const result = this.result;
    const failed = Boolean(result.error);
    const withheld = this.withheld;
    this.root.dataset.state = failed ? "error" : withheld ? "withheld" : "shown";
    this.error.hidden = !failed;
    this.error.textContent = failed ? `${result.name} could not be read: ${result.error}` : "";
    this.oodBox.hidden = failed || !result.verdict?.withheld;
    this.oodReason.textContent = failed ? "" : result.verdict?.withheld ?? "";
    this.unlikeNote.hidden = failed || !result.verdict?.unlike;
    const site = failed ? "" : siteSentence(result.verdict ?? {});
    this.siteNote.hidden = !site;
    this.siteNote.textContent = site ? `${site}: the probabilities, the class and the band come from this site's ` +
      "calibration of the model." : "";
    this.root.dataset.siteProfile = site ? result.verdict.site.summary : "";
    this.probabilitiesCaption.textContent = site ? `Probabilities calibrated for ${result.verdict.site.site}`
      : "Calibrated probabilities";
    this.revealButton.hidden = !withheld;
    this.figure.hidden = failed;
    this.details.hidden = failed || withheld;
    this.heatCanvas.hidden = withheld;
    this.actions.hidden = failed;
    this.caption.textContent = failed ? "" : `${result.name}: ${result.width} x ${result.height} pixels`;
    this.probabilities.replaceChildren();
    this.prediction.replaceChildren();
    this.prediction.dataset.band = "";
    this.bandNote.hidden = true;
    // Evidence in the lungs (docs/lungs.md), for models with a lung segmenter; a warning when it is low.
    this.evidence.hidden = failed || withheld || !result.lungs?.summary;
    this.evidence.textContent = result.lungs?.summary ?? "";
    this.evidence.dataset.low = String(Boolean(result.lungs?.low));
    this.evidence.setAttribute("role", result.lungs?.low ? "alert" : "status");
    this.outlineControl.hidden = failed || !result.lungMask;
    this.applyOutline();
    if (failed || withheld) {
      this.prediction.hidden = true;
      this.labelCanvas();
      return;
    }
    this.prediction.hidden = false;
    const v = result.verdict;
    const p = result.probabilities;
    const strong = (i) => [el("strong", { textContent: this.classes[i] }), ` (${percent(p[i])})`];
    let highlighted = [v.topIndex];
    if (v.withheld) {
      this.prediction.append("The model's output anyway, not a diagnosis: highest ", ...strong(v.topIndex));
      highlighted = [];
    } else if (v.band === "uncertain") {
      this.prediction.dataset.band = "uncertain";
      this.prediction.append(el("span", { className: "badge", textContent: "Uncertain" }), " ", ...strong(v.leading[0]),
        " or ", ...strong(v.leading[1]));
      highlighted = v.leading;
    } else {
      this.prediction.dataset.band = v.band ?? "";
      this.prediction.append("Most likely: ", ...strong(v.topIndex));
    }
    const sentence = v.withheld ? "" : bandSentence(v, this.card);
    this.bandNote.hidden = !sentence;
    this.bandNote.textContent = sentence;
    this.classes.forEach((name, i) => {
      const meter = el("meter", { min: 0, max: 1, value: p[i] });
      meter.setAttribute("aria-label", `${name} probability`);
      this.probabilities.append(el("tr", { className: highlighted.includes(i) ? "predicted" : "" },
        el("th", { scope: "row", textContent: name }),
        el("td", {}, meter),
        el("td", { className: "num", textContent: percent(p[i]) })));
    });
    this.labelCanvas();
  }

  labelCanvas() {
    const result = this.result;
    if (!result || result.error) return;
    this.imageCanvas.setAttribute("aria-label", this.withheld ? `${result.name} (heatmap withheld)`
      : `${result.name}, with the heatmap of ${this.classes[this.heatClass()]} (${SCALES[this.scale].short})`);
  }

  /** What the report needs to know about the view: whether the output was shown, and which heatmap. */
  reportView() {
    const result = this.result;
    return { revealed: this.revealed, heat: this.withheld ? null : {
      className: this.classes[this.heatClass(result)], scale: SCALES[this.scale].short } };
  }

  /** The image with the heatmap as shown (opacity included), on a new 2-D canvas; null without a picture. */
  picture() {
    if (!this.size || this.figure.hidden) return null;
    const canvas = Object.assign(document.createElement("canvas"), this.size);
    const context = /** @type {CanvasRenderingContext2D} */ (canvas.getContext("2d"));
    context.drawImage(this.imageCanvas, 0, 0);
    if (!this.heatCanvas.hidden) {
      context.globalAlpha = Number(this.opacity.value) / 100;
      context.drawImage(this.heatCanvas, 0, 0, this.size.width, this.size.height);
    }
    if (!this.outlineCanvas.hidden) {
      context.globalAlpha = 1;
      context.drawImage(this.outlineCanvas, 0, 0, this.size.width, this.size.height);
    }
    return canvas;
  }

  /**
   * @param {ImageBitmap} image the gray image
   * @param {ImageBitmap} [heat] the heatmap
   * @param {ImageBitmap | null} [outline] the lung fields, for a model with a lung segmenter
   */
  setPictures(image, heat, outline = null) {
    // A bitmaprenderer canvas keeps its own width/height and scales the bitmap to them: match them first.
    this.size = { width: image.width, height: image.height };
    Object.assign(this.imageCanvas, this.size);
    this.imageContext.transferFromImageBitmap(image);
    if (heat) this.setHeat(heat);
    if (outline) {
      Object.assign(this.outlineCanvas, { width: outline.width, height: outline.height });
      this.outlineContext.transferFromImageBitmap(outline);
    }
    this.applyOutline();
  }

  /** The lung outline is drawn over the image when the toggle is on and the model has a lung mask. */
  applyOutline() {
    this.outlineCanvas.hidden = !(this.outlineToggle.checked && this.result?.lungMask && !this.result?.error);
  }

  setHeat(heat) {
    Object.assign(this.heatCanvas, { width: heat.width, height: heat.height });
    this.heatContext.transferFromImageBitmap(heat);
    this.labelCanvas();
  }

  clearPictures() {
    this.size = null;
    this.imageContext.transferFromImageBitmap(null);
    this.heatContext.transferFromImageBitmap(null);
    this.outlineContext.transferFromImageBitmap(null);
  }
}
