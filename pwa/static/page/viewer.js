// The viewer: the image with the chosen class's heatmap over it, the probabilities, the prediction and the
// out-of-distribution warning. Pictures arrive as ImageBitmaps from the worker.
import { el, percent } from "./format.js";

export class Viewer {
  constructor(root, classes) {
    this.root = root;
    this.classes = classes;
    this.imageCanvas = root.querySelector("#image-canvas");
    this.heatCanvas = root.querySelector("#heat-canvas");
    this.imageContext = this.imageCanvas.getContext("bitmaprenderer");
    this.heatContext = this.heatCanvas.getContext("bitmaprenderer");
    this.caption = root.querySelector("#viewer-caption");
    this.prediction = root.querySelector("#prediction");
    this.probabilities = root.querySelector("#probabilities tbody");
    this.ood = root.querySelector("#ood-warning");
    this.error = root.querySelector("#viewer-error");
    this.classSelect = root.querySelector("#heat-class");
    this.opacity = root.querySelector("#opacity");
    this.opacityValue = root.querySelector("#opacity-value");
    this.opacity.addEventListener("input", () => this.applyOpacity());
    this.applyOpacity();
    this.result = null;
  }

  applyOpacity() {
    const value = Number(this.opacity.value);
    this.heatCanvas.style.opacity = String(value / 100);
    this.opacityValue.textContent = `${value} %`;
  }

  /** The class whose heatmap is shown: the predicted one unless the user chose another. */
  heatClass(result = this.result) {
    const choice = this.classSelect.value;
    return choice === "predicted" ? result.predicted : Number(choice);
  }

  show(result, pictures) {
    this.result = result;
    this.root.hidden = false;
    this.root.dataset.file = result.name;
    this.caption.textContent = result.error ? result.name : `${result.name}: ${result.width} x ${result.height} pixels`;
    this.error.hidden = !result.error;
    this.error.textContent = result.error ? `${result.name}: ${result.error}` : "";
    this.ood.hidden = !(result.ood && !result.error);
    this.root.dataset.ood = String(Boolean(result.ood));
    this.probabilities.replaceChildren();
    if (result.error) {
      this.prediction.textContent = "";
      this.clearPictures();
      return;
    }
    const k = result.predicted;
    this.prediction.replaceChildren("Most likely: ", el("strong", { textContent: result.className }),
      ` (${percent(result.probabilities[k])})`);
    this.classes.forEach((name, i) => {
      const meter = el("meter", { min: 0, max: 1, value: result.probabilities[i] });
      meter.setAttribute("aria-label", `${name} probability`);
      this.probabilities.append(el("tr", { className: i === k ? "predicted" : "" },
        el("th", { scope: "row", textContent: name }),
        el("td", {}, meter),
        el("td", { className: "num", textContent: percent(result.probabilities[i]) })));
    });
    if (pictures) this.setPictures(pictures.image, pictures.heat);
    this.imageCanvas.setAttribute("aria-label", `${result.name}, with the heatmap of ` +
      `${this.classes[this.heatClass(result)]}`);
  }

  setPictures(image, heat) {
    // A bitmaprenderer canvas keeps its own width/height and scales the bitmap to them: match them first.
    this.size = { width: image.width, height: image.height };
    Object.assign(this.imageCanvas, this.size);
    this.imageContext.transferFromImageBitmap(image);
    if (heat) this.setHeat(heat);
  }

  setHeat(heat) {
    Object.assign(this.heatCanvas, { width: heat.width, height: heat.height });
    this.heatContext.transferFromImageBitmap(heat);
    if (this.result) {
      this.imageCanvas.setAttribute("aria-label", `${this.result.name}, with the heatmap of ` +
        `${this.classes[this.heatClass()]}`);
    }
  }

  clearPictures() {
    this.imageContext.transferFromImageBitmap(null);
    this.heatContext.transferFromImageBitmap(null);
  }
}
