// @ts-check
// The page: file inputs and the drop zone, the batch loop (one file at a time in the worker), the table, the
// viewer, the model card and the engine status. Decoding and inference run in worker.js; the service worker
// (sw.js) is registered by sw-register.js. The "Validate at your site" view is site-view.js; while a site profile is
// in use, every file of a batch is calibrated by it (in the worker) and says so.
import { InferenceClient } from "./client.js";
import { downloadCsv, toCsv } from "./csv.js";
import { downloadBlob, stamp } from "./download.js";
import { renderModelCard } from "./modelcard.js";
import { renderReportSection, reportLines, reportPng } from "./report.js";
import { ResultsTable } from "./results.js";
import { calibrationOf, SiteView } from "./site-view.js";
import { checkResults } from "./shift.js";
import { registerServiceWorker, takeUpdatedFlag } from "./sw-register.js";
import { announcement } from "./verdict.js";
import { Viewer } from "./viewer.js";
import { INFERNO } from "../shared/contract.js";

const $ = (selector) => document.querySelector(selector);
const params = new URLSearchParams(location.search);

/** card: model.json, build: build.json (as parsed); files: the batch; shown: the row in the viewer (-1: none);
 * modelFile: the ONNX file in use; profile: the site profile in use (checked for that file), or null. */
/** @type {{card: any, build: any, files: File[], batch: number, running: boolean, shown: number, ready: boolean,
 *   modelFile: string, profile: any}} */
const state = { card: null, build: null, files: [], batch: 0, running: false, shown: -1, ready: false,
  modelFile: "", profile: null };

const status = $("#status");
function setStatus(text, kind = "info") {
  status.textContent = text;
  status.dataset.kind = kind;
}

function showNotice(text, action) {
  const notice = $("#update-notice");
  notice.replaceChildren(text);
  if (action) {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = action.label;
    button.addEventListener("click", action.run);
    notice.append(" ", button);
  }
  notice.hidden = false;
}

async function fetchJson(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return response.json();
}

function drawColorbar() {
  const canvas = $("#colorbar");
  const context = canvas.getContext("2d");
  const image = context.createImageData(256, 1);
  for (let i = 0; i < 256; i++) {
    for (let c = 0; c < 3; c++) image.data[4 * i + c] = parseInt(INFERNO.substr(6 * i + 2 * c, 2), 16);
    image.data[4 * i + 3] = 255;
  }
  context.putImageData(image, 0, 0);
}

function showEngine(info) {
  const engine = $("#engine");
  Object.assign(engine.dataset, {
    threads: String(info.threads), isolated: String(info.isolated), model: info.model, version: info.version,
    build: state.build?.build ?? "",
  });
  engine.textContent = `Engine: onnxruntime-web ${info.ort} (WebAssembly, ${info.threads} ` +
    `thread${info.threads === 1 ? "" : "s"}` +
    `${info.isolated ? ", cross-origin isolated" : ", not cross-origin isolated"})` +
    ` · model ${info.model} (${info.precision}) · version ${info.version}` +
    (state.build ? ` · build ${state.build.build.slice(0, 12)}` : "");
}

// --- the batch -------------------------------------------------------------------------------------------------

let client, table, viewer, siteView;

async function classify(files) {
  if (!files.length) return;
  if (!state.ready) {
    setStatus("The model is still loading: try again in a moment.", "error");
    return;
  }
  client.cancel();
  const batch = ++state.batch;
  // The profile in use when the batch starts calibrates all of it (a change starts a new batch).
  const site = state.profile ? calibrationOf(state.profile) : null;
  state.files = files;
  state.running = true;
  state.shown = -1;
  table.reset(files);
  $("#results").hidden = files.length < 2;
  $("#results").dataset.state = "running";
  $("#download-csv").disabled = true;
  const progress = $("#progress");
  progress.max = files.length;
  progress.value = 0;
  let done = 0;
  const started = performance.now();
  await Promise.all(files.map(async (file, index) => {
    let result;
    try {
      result = await client.request("classify", { file, name: file.name, display: index === 0, scale: viewer.scale,
        calibration: site?.worker ?? null });
    } catch (e) {
      result = { name: file.name, error: `internal error: ${e.message}` };
    }
    if (batch !== state.batch || result.cancelled) return;
    const { image, heat, outline, ...data } = result;
    if (site && !data.error) data.siteProfile = site.result;
    table.update(index, data);
    if (index === 0) showResult(0, image ? { image, heat, outline } : null, { focus: focusIsFree() });
    done += 1;
    progress.value = done;
    setStatus(`Classified ${done} of ${files.length} file${files.length === 1 ? "" : "s"}…`);
  }));
  if (batch !== state.batch) return;
  state.running = false;
  $("#results").dataset.state = "done";
  $("#download-csv").disabled = false;
  const failed = table.results.filter((r) => r.error).length;
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  setStatus(`Done: ${files.length - failed} of ${files.length} file${files.length === 1 ? "" : "s"} classified` +
    `${failed ? `, ${failed} could not be read` : ""} (${seconds} s).`, failed ? "warn" : "info");
  showShift(table.results);
}

/** The site-shift warning (shift.js, docs/site.md): do this batch's films, as one site's, differ from the films the
 * model was validated on? Judged from `site_shift.min_films` films; said for every batch of two or more. */
function showShift(results) {
  const box = $("#site-shift");
  const model = results.find((r) => r.model)?.model ?? state.card.default_model;
  const verdict = checkResults(results, state.card, model);
  box.hidden = results.length < 2;
  Object.assign(box.dataset, { judged: String(verdict.judged), shifted: String(verdict.shifted),
    pValue: verdict.p_value === null ? "" : String(verdict.p_value), n: String(verdict.n) });
  box.classList.toggle("warn", verdict.shifted === true);
  box.setAttribute("role", verdict.shifted ? "alert" : "status");
  box.textContent = verdict.judged
    ? `Site check, ${verdict.n} films: ${verdict.message} (p = ${Number(verdict.p_value).toPrecision(3)}, threshold ` +
      `${verdict.alpha}).`
    : `Site check: ${verdict.message}.`;
}

/** True when moving focus to a new result takes it from nowhere the user is working (the page itself, or the
 * file buttons that started the batch). */
function focusIsFree() {
  const active = document.activeElement;
  return !active || active === document.body || Boolean(active.closest("#dropzone"));
}

/** Show row `index` in the viewer, bring it into view (the viewer sits above the table, and on a phone below the
 * drop zone), say its prediction in the live region, and with `focus` move keyboard focus to its heading. */
function showResult(index, pictures, { focus = false } = {}) {
  const row = table.results[index];
  if (!row) return;
  state.shown = index;
  table.select(index);
  viewer.show(row, pictures);
  $("#viewer").scrollIntoView({ block: "start" });
  if (focus) $("#viewer-title").focus({ preventScroll: true });
  $("#result-live").textContent = announcement(row, row.verdict, state.card.classes);
}

async function showRow(index) {
  const row = table.results[index];
  if (!row) return;
  showResult(index, null, { focus: true });
  if (row.error || !row.cam) return;
  try {
    const pictures = await client.request("render", {
      file: row.file, name: row.name, cam: row.cam, camShape: row.camShape, cls: viewer.heatClass(row),
      scale: viewer.scale, probabilities: row.probabilities, cropBox: row.cropBox, lungMask: row.lungMask,
      lungMaskSize: row.lungMaskSize,
    }, { urgent: true });
    if (state.shown === index) viewer.setPictures(pictures.image, pictures.heat, pictures.outline);
  } catch (e) {
    setStatus(`Cannot show ${row.name}: ${e.message}`, "error");
  }
}

async function redrawHeat() {
  const row = table.results[state.shown];
  if (!row || row.error || !row.cam || !viewer.size) return;
  const index = state.shown;
  const { heat } = await client.request("heatmap", {
    cam: row.cam, camShape: row.camShape, cls: viewer.heatClass(row), ...viewer.size, scale: viewer.scale,
    probabilities: row.probabilities, cropBox: row.cropBox, imageWidth: row.width,
  }, { urgent: true });
  if (state.shown === index) viewer.setHeat(heat);
}

// --- the report ------------------------------------------------------------------------------------------------

/** The shown file's report: its lines and picture, also written into the printable section; null without one. */
function currentReport() {
  const row = table?.results[state.shown];
  if (!row || row.error || !row.verdict) return null;
  const lines = reportLines(row, state.card, viewer.reportView());
  const picture = viewer.picture();
  renderReportSection($("#report-body"), lines, picture);
  return { row, lines, picture };
}

async function saveReport() {
  const report = currentReport();
  if (!report) return;
  const blob = await reportPng(report.lines, report.picture);
  const base = report.row.name.replace(/\.[^.]*$/, "").replace(/[^\w.-]+/g, "_").slice(0, 60) || "image";
  downloadBlob(blob, `cxr-report-${base}-${stamp()}.png`);
  setStatus(`Report for ${report.row.name} saved (PNG, made on this device).`);
}

// --- wiring ----------------------------------------------------------------------------------------------------

function wireInputs() {
  const fileInput = $("#file-input");
  const cameraInput = $("#camera-input");
  $("#choose-files").addEventListener("click", () => fileInput.click());
  $("#take-photo").addEventListener("click", () => cameraInput.click());
  for (const input of [fileInput, cameraInput]) {
    input.addEventListener("change", () => {
      classify(Array.from(input.files));
      input.value = "";
    });
  }
  const zone = $("#dropzone");
  // A file dropped anywhere else must not make the browser open it.
  for (const type of ["dragover", "drop"]) window.addEventListener(type, (e) => e.preventDefault());
  zone.addEventListener("dragenter", () => zone.classList.add("dragging"));
  zone.addEventListener("dragover", (e) => {
    e.preventDefault();
    e.dataTransfer.dropEffect = "copy";
    zone.classList.add("dragging");
  });
  zone.addEventListener("dragleave", (e) => {
    if (!zone.contains(e.relatedTarget)) zone.classList.remove("dragging");
  });
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("dragging");
    classify(Array.from(e.dataTransfer.files));
  });
  $("#download-csv").addEventListener("click", () => {
    downloadCsv(toCsv(table.results, state.card.classes), `cxr-triage-${stamp()}.csv`);
  });
  for (const id of ["#heat-class", "#heat-scale"]) {
    $(id).addEventListener("change", () => redrawHeat().catch((e) => setStatus(e.message, "error")));
  }
  $("#save-report").addEventListener("click", () => {
    saveReport().catch((e) => setStatus(`Cannot save the report: ${e.message}`, "error"));
  });
  $("#print-report").addEventListener("click", () => {
    if (currentReport()) window.print();
  });
  $("#model-choice").addEventListener("change", async (e) => {
    const file = e.target.value;
    state.ready = false;
    setStatus(`Loading ${file}…`);
    try {
      const info = await client.request("setModel", { model: file }, { urgent: true });
      showEngine(info);
      state.modelFile = info.model;
      await siteView.restore(); // a site profile belongs to one model file: checked again for this one
      state.ready = true;
      setStatus(`Model ${file} ready.`);
      if (state.files.length) classify(state.files);
    } catch (err) {
      setStatus(`Cannot load ${file}: ${err.message}`, "error");
    }
  });
}

async function main() {
  drawColorbar();
  const updated = takeUpdatedFlag();
  wireInputs();
  try {
    [state.card, state.build] = await Promise.all([fetchJson("model/model.json"), fetchJson("build.json")]);
  } catch (e) {
    setStatus(`Cannot load the model description: ${e.message}`, "error");
    startOfflineSupport();
    return;
  }
  if (updated) {
    showNotice(`Updated to version ${state.card.version} (build ${state.build.build.slice(0, 12)}).`);
    $("#update-notice").dataset.version = state.card.version;
  }
  $("#footer-version").textContent = state.card.version;
  renderModelCard($("#model-card-body"), state.card);
  table = new ResultsTable($("#results-table tbody"), state.card, (i) => showRow(i));
  viewer = new Viewer($("#viewer"), state.card, {
    onReveal: (row) => {
      $("#result-live").textContent = `${row.name}: the model's output, not a diagnosis: highest ` +
        `${row.verdict.topClass}.`;
    },
  });
  client = new InferenceClient(new URL("../worker/worker.js", import.meta.url), (e) => setStatus(e.message, "error"));
  siteView = new SiteView($("#site"), state.card, {
    client,
    modelFile: () => state.modelFile,
    ready: () => state.ready,
    onProfile: (profile) => {
      const changed = profile !== state.profile;
      state.profile = profile;
      if (changed && state.ready && state.files.length) classify(state.files); // the open files, as they now are
    },
  });
  const requestedModel = params.get("model") || $("#model-choice").value;
  $("#model-choice").value = requestedModel;
  try {
    const info = await client.request("init", { threads: Number(params.get("threads")) || 0, model: requestedModel });
    $("#model-choice").value = info.model;
    showEngine(info);
    state.modelFile = info.model;
    await siteView.restore(); // before the first file: a stored site profile calibrates it, or says why not
    state.ready = true;
    status.dataset.state = "ready";
    setStatus("Ready. Open or drop chest X-rays: they stay on this device." +
      (state.profile ? ` Results are ${calibrationOf(state.profile).result.summary}.` : ""));
  } catch (e) {
    status.dataset.state = "failed";
    setStatus(`The model could not be loaded: ${e.message}`, "error");
  }
  startOfflineSupport();
}

/** Registered only once the model is loaded: the service worker's precache then revalidates the files the page
 * has just downloaded (304s from the HTTP cache) instead of downloading the model a second time in parallel. */
function startOfflineSupport() {
  registerServiceWorker({
    isBusy: () => state.running,
    onUpdateReady: (reload) => showNotice("A new version is ready.", { label: "Reload now", run: reload }),
    onOfflineReady: () => { document.documentElement.dataset.offline = "ready"; },
    onError: (e) => console.info(`Offline use is not available: ${e.message}`),
  });
}

main();
