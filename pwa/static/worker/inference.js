// @ts-check
// onnxruntime-web (wasm execution provider) in the worker: one session per model file, created once and reused.
import * as ort from "../../vendor/ort/ort.wasm.min.mjs";

export const ORT_VERSION = ort.env.versions?.web ?? "";
let configuredThreads = 0;

/** The bytes of a build file, verified against its SHA-256, through the build's own cache (`cacheName`, the one
 * the service worker precaches into). The first visit downloads the large files (model, wasm) once: the service
 * worker, installed after the model is loaded, finds them already in its cache. */
export async function fetchBuildFile(url, file, expectedSha256, cacheName) {
  const cache = cacheName && self.caches ? await caches.open(cacheName) : null;
  const cached = await cache?.match(url);
  let response = cached;
  if (!response) {
    try {
      response = await fetch(url);
    } catch {
      // Offline, and this file was never stored: models other than the default are fetched on first use only.
      throw new Error(`cannot load ${file}: there is no network, and it has not been stored for offline use ` +
        "yet (choose it once while online)");
    }
  }
  if (!response.ok) throw new Error(`cannot load ${file}: HTTP ${response.status}`);
  const bytes = new Uint8Array(await response.arrayBuffer());
  if (expectedSha256 && (await sha256Hex(bytes)) !== expectedSha256) {
    if (cached) await cache?.delete(url);
    throw new Error(`${file} does not match its SHA-256 (a partial or mixed deployment?)`);
  }
  if (cache && !cached) {
    await cache.put(url, new Response(bytes, { headers: response.headers })).catch(() => {}); // quota: no offline
  }
  return bytes;
}

/** Set the thread count (and the wasm binary, fetched by the caller) once, before the first session: the wasm
 * module starts with them and keeps them. */
export function configure(threads, wasmBinary) {
  if (configuredThreads) return configuredThreads;
  if (wasmBinary) ort.env.wasm.wasmBinary = wasmBinary;
  ort.env.wasm.numThreads = threads;
  ort.env.wasm.proxy = false; // this already is a worker
  ort.env.logLevel = "error";
  configuredThreads = threads;
  return threads;
}

/** The thread count onnxruntime actually uses (it falls back to 1 without SharedArrayBuffer). */
export const activeThreads = () => ort.env.wasm.numThreads;

async function sha256Hex(bytes) {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

export class Model {
  /** `card`: model.json, the one source of the graph's input and output names. */
  constructor(session, file, card) {
    this.session = session;
    this.file = file;
    this.inputName = card.input.name;
    this.outputNames = card.output_names;
  }

  /** Fetch `url` (through the build's cache), check it against model.json's SHA-256, and create the session. */
  static async load(url, file, card, cacheName) {
    const bytes = await fetchBuildFile(url, file, card.files[file].sha256, cacheName);
    const session = await ort.InferenceSession.create(bytes, {
      executionProviders: ["wasm"], graphOptimizationLevel: "all", logSeverityLevel: 3,
    });
    return new Model(session, file, card);
  }

  /** One gray image {width, height, data} -> probabilities [3], logits [3], cam [3*h*w], camShape [h, w],
   * oodScore. `logits` (before any temperature) is what a site profile calibrates (docs/site.md). */
  async run(image) {
    const input = new ort.Tensor("float32", image.data, [1, 1, image.height, image.width]);
    const out = await this.session.run({ [this.inputName]: input }, this.outputNames);
    try {
      const result = {
        probabilities: Array.from(out.probabilities.data),
        logits: out.logits ? Array.from(out.logits.data) : null,
        cam: out.cam.data.slice(),
        camShape: out.cam.dims.slice(2).map(Number),
        oodScore: out.ood_score.data[0],
      };
      if (out.gate) { // docs/gate.md: the models that carry the chest gate
        Object.assign(result, { gate: out.gate.data[0], gateReason: out.gate_reason.data[0] });
      }
      if (out.lung_evidence) { // docs/lungs.md: the models that carry a lung segmenter
        Object.assign(result, {
          lungMask: out.lung_mask.data.slice(),
          lungMaskSize: Number(out.lung_mask.dims[3]),
          cropBox: Array.from(out.crop_box.data),
          lungFallback: out.lung_fallback.data[0] > 0.5,
          lungEvidence: out.lung_evidence.data[0],
        });
      }
      return result;
    } finally {
      for (const tensor of Object.values(out)) tensor.dispose?.();
      input.dispose?.();
    }
  }

  release() {
    return this.session.release();
  }
}
