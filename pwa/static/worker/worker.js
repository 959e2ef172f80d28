// @ts-check
// The app's inference worker: decode -> onnxruntime-web -> heatmap, one file at a time, off the main thread.
//
// Messages in: {id, type, ...} with type init | setModel | classify | render | heatmap | cancel. Replies:
// {id, ok: true, result} or {id, ok: false, error}. Requests run in order, one at a time; `urgent` ones (the
// viewer's) go to the front of the queue, and `cancel` drops the queued classifications (each answered
// {cancelled: true}). A file that cannot be decoded is a result with `error`, not a failure.
import { argmax, calibratedProbabilities } from "../shared/calibration.js";
import { INFERNO, WASM_GZIP } from "../shared/contract.js";
import { decode, DecodeError } from "./decode.js";
import { hottestCell, lutFromHex } from "./heatmap.js";
import { activeThreads, configure, fetchBuildFile, Model, ORT_VERSION } from "./inference.js";
import { grayBitmap, heatBitmap, outlineBitmap } from "./render.js";

const LUT = lutFromHex(INFERNO);
const MODEL_BASE = new URL("../../model/", import.meta.url);
const SITE = new URL("../../", import.meta.url);
let card = null;
let build = null; // build.json: the cache name and every file's SHA-256
let model = null;
let threads = 1;

const now = () => performance.now();

/** The crop box (input pixels) in the pixels of a width-wide picture of an imageWidth-wide image; null: none. */
const scaledBox = (box, imageWidth, width) => box ? box.map((v) => (v * width) / imageWidth) : null;

/** What the lung outputs say (docs/lungs.md), in words for the page and the report; undefined without them. */
function lungs(out) {
  if (out.lungEvidence === undefined) return undefined;
  const threshold = card.lungs?.evidence_threshold ?? 0;
  const share = Math.round(100 * out.lungEvidence);
  if (out.lungFallback) {
    return { evidence: out.lungEvidence, fallback: true, low: false, summary: "The lung fields could not be " +
      "found reliably in this image, so the share of the evidence inside them is not given." };
  }
  const low = out.lungEvidence < threshold;
  return { evidence: out.lungEvidence, fallback: false, low, summary: low
    ? `Only ${share}% of the model's evidence lies inside the lung fields, less than for 95% of the X-rays it ` +
      "was checked on: the result may rest on something outside the lungs."
    : `${share}% of the model's evidence lies inside the lung fields.` };
}

/** The wasm binary ships gzip-compressed (3.7 MB instead of 14 MB on the first visit); inflate it here. */
async function gunzip(bytes) {
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

function status() {
  return {
    threads: activeThreads() ?? threads,
    isolated: self.crossOriginIsolated === true,
    model: model?.file ?? null,
    precision: model ? card.files[model.file]?.precision ?? "" : "",
    version: card?.version ?? "",
    ort: ORT_VERSION,
  };
}

async function loadModel(file) {
  if (model?.file === file) return;
  if (!(file in card.files)) throw new Error(`model.json has no model file ${file}`);
  const next = await Model.load(new URL(file, MODEL_BASE), file, card, build?.cache);
  const previous = model;
  model = next;
  await previous?.release();
}

const handlers = {
  async init({ threads: requested, model: file }) {
    const response = await fetch(new URL("model.json", MODEL_BASE));
    if (!response.ok) throw new Error(`cannot load model.json: HTTP ${response.status}`);
    card = await response.json();
    const buildResponse = await fetch(new URL("build.json", SITE));
    build = buildResponse.ok ? await buildResponse.json() : null;
    const packed = await fetchBuildFile(new URL(WASM_GZIP, SITE), WASM_GZIP, build?.files?.[WASM_GZIP]?.sha256,
      build?.cache);
    const wasm = await gunzip(packed);
    // Threads need SharedArrayBuffer, which needs cross-origin isolation; without it onnxruntime uses one.
    const wanted = Number.isInteger(requested) && requested > 0 ? requested : 2;
    threads = configure(self.crossOriginIsolated ? wanted : 1, wasm);
    await loadModel(file && file in card.files ? file : card.default_model);
    return [status()];
  },

  async setModel({ model: file }) {
    await loadModel(file);
    return [status()];
  },

  // `calibration`: a site profile's {offsets, temperature}, checked by the page (site-profile.js). Applied here,
  // before the class is chosen, so that the class, the hottest cell and the heatmap's weights all come from the
  // calibrated probabilities, as runtime/predictor.py computes them with a profile. Without it: the model as it
  // comes (site validation scores films so).
  /** @param {{file: File, name: string, display: boolean, scale?: string,
   *   calibration?: {offsets: number[], temperature: number} | null}} request */
  async classify({ file, name, display, scale, calibration = null }) {
    const t0 = now();
    let image;
    try {
      image = await decode(file, name);
    } catch (e) {
      if (e instanceof DecodeError) return [{ name, error: e.reason, message: e.message }];
      throw e;
    }
    const t1 = now();
    const out = await model.run(image);
    const t2 = now();
    const [h, w] = out.camShape;
    if (calibration && !out.logits) throw new Error("this model has no logits output: a site profile cannot apply");
    const probabilities = calibration
      ? calibratedProbabilities(out.logits, calibration.offsets, card.temperature, calibration.temperature)
      : out.probabilities;
    const k = argmax(probabilities);
    const result = {
      name,
      width: image.width,
      height: image.height,
      probabilities,
      logits: out.logits,
      calibrated: Boolean(calibration),
      predicted: k, // the model's argmax; whether it is shown as a diagnosis is the page's decision (verdict.js)
      topClass: card.classes[k],
      oodScore: out.oodScore,
      ood: out.oodScore > card.ood_threshold,
      gate: out.gate ?? null, // withholding is the page's decision too (verdict.js decide)
      gateReason: out.gateReason ?? null,
      hottest: hottestCell(out.cam, h, w, k),
      cam: out.cam,
      camShape: out.camShape,
      cropBox: out.cropBox ?? null, // where the map lies on the image (input pixels): a lung-cropping model's box
      lungs: lungs(out),
      lungMask: out.lungMask ?? null,
      lungMaskSize: out.lungMaskSize ?? 0,
      model: model.file,
      version: card.version,
      timings: { decode: t1 - t0, inference: t2 - t1 },
    };
    const transfer = [];
    if (display) {
      result.image = await grayBitmap(image);
      result.heat = await heatBitmap(out.cam, h, w, k, result.image.width, result.image.height, LUT, scale,
        probabilities, scaledBox(result.cropBox, image.width, result.image.width));
      transfer.push(result.image, result.heat);
      if (out.lungMask) {
        result.outline = await outlineBitmap(out.lungMask, out.lungMaskSize, result.image.width, result.image.height);
        transfer.push(result.outline);
      }
    }
    result.timings.total = now() - t0;
    return [result, transfer];
  },

  // The viewer's picture of a file classified before (decoded again: nothing is kept per file).
  async render({ file, name, cam, camShape, cls, scale, probabilities, cropBox, lungMask, lungMaskSize }) {
    const image = await decode(file, name);
    const bitmap = await grayBitmap(image);
    const heat = await heatBitmap(cam, camShape[0], camShape[1], cls, bitmap.width, bitmap.height, LUT, scale,
      probabilities, scaledBox(cropBox, image.width, bitmap.width));
    const pictures = { image: bitmap, heat };
    if (lungMask) pictures.outline = await outlineBitmap(lungMask, lungMaskSize, bitmap.width, bitmap.height);
    return [pictures, Object.values(pictures)];
  },

  async heatmap({ cam, camShape, cls, width, height, scale, probabilities, cropBox, imageWidth }) {
    const heat = await heatBitmap(cam, camShape[0], camShape[1], cls, width, height, LUT, scale, probabilities,
      scaledBox(cropBox, imageWidth, width));
    return [{ heat }, [heat]];
  },
};

const queue = [];
let busy = false;

async function pump() {
  if (busy) return;
  busy = true;
  while (queue.length) {
    const { id, type, ...payload } = queue.shift();
    try {
      const [result, transfer = []] = await handlers[type](payload);
      self.postMessage({ id, ok: true, result }, transfer);
    } catch (e) {
      self.postMessage({ id, ok: false, error: e instanceof Error ? e.message : String(e) });
    }
  }
  busy = false;
}

self.onmessage = ({ data }) => {
  if (data.type === "cancel") {
    for (let i = queue.length - 1; i >= 0; i--) {
      if (queue[i].type !== "classify") continue;
      self.postMessage({ id: queue.splice(i, 1)[0].id, ok: true, result: { cancelled: true } });
    }
    return;
  }
  if (!(data.type in handlers)) {
    self.postMessage({ id: data.id, ok: false, error: `unknown request ${data.type}` });
    return;
  }
  if (data.urgent) queue.unshift(data);
  else queue.push(data);
  pump();
};
