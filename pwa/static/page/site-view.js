// @ts-check
// The "Validate at your site" view (docs/site.md, docs/pwa.md): labelled films in (a folder per class, or files and
// a CSV: site-data.js), each scored by the inference worker as the model comes (no profile applied, as `cxr
// validate` scores them), then the figures and the site profile (site-validation.js), the report
// (site-report.js), and what can be done with the profile: use it on this device (site-store.js), export it,
// import one, stop using it. A profile is applied only after site-profile.js `checkProfile` accepted it for the
// model file in use; a refusal says why and changes nothing.
import { downloadBlob, stamp } from "./download.js";
import { fixed } from "./format.js";
import { filmsFromCsv, filmsFromFolders, SiteDataError } from "./site-data.js";
import { checkProfile, ProfileError, profileSummary, profileText } from "./site-profile.js";
import { renderSiteReport } from "./site-report.js";
import { forgetProfile, storedProfile, storeProfile } from "./site-store.js";
import { validateSite } from "./site-validation.js";
import { band } from "./uncertainty.js";
import { decide } from "./verdict.js";

/** The JSON files a validation gives, as `cxr validate` writes them. */
const json = (value) => new Blob([JSON.stringify(value, null, 2) + "\n"], { type: "application/json" });
const fileSafe = (text) => text.replace(/[^\w.-]+/g, "_").slice(0, 60) || "site";

export class SiteView {
  /**
   * @param {HTMLElement} root the view's section
   * @param {any} card model.json
   * @param {{client: any, modelFile: () => string, ready: () => boolean,
   *   onProfile: (profile: any) => void}} hooks client: the inference worker's; modelFile: the ONNX file in use;
   *   ready: whether the model is loaded; onProfile: the profile now in use (null: none)
   */
  constructor(root, card, { client, modelFile, ready, onProfile }) {
    this.root = root;
    this.card = card;
    this.client = client;
    this.modelFile = modelFile;
    this.ready = ready;
    this.onProfile = onProfile;
    /** @type {any} the checked profile in use, or null */
    this.profile = null;
    /** @type {{metrics: any, profile: any} | null} the last validation's outcome */
    this.outcome = null;
    this.running = false;
    const $ = (selector) => /** @type {any} */ (root.querySelector(selector));
    this.$ = $;
    this.current = $("#site-current");
    this.message = $("#site-message");
    this.status = $("#site-status");
    this.progress = $("#site-progress");
    this.report = $("#site-report");
    this.removeButton = $("#site-remove");
    this.importInput = $("#site-import-input");
    /** @type {HTMLInputElement[]} */
    this.folders = Array.from(root.querySelectorAll("input.site-folder"));
    for (const radio of root.querySelectorAll("input[name=site-source]")) {
      radio.addEventListener("change", () => this.showSource());
    }
    $("#site-run").addEventListener("click", () => this.run());
    $("#site-import").addEventListener("click", () => this.importInput.click());
    this.importInput.addEventListener("change", async () => {
      const file = this.importInput.files[0];
      this.importInput.value = "";
      if (file) await this.adopt(await file.text(), file.name, "imported");
    });
    this.removeButton.addEventListener("click", () => this.remove());
    this.showSource();
  }

  /** "folders" or "csv": which inputs the validation reads. */
  get source() {
    return this.$("#site-source-csv").checked ? "csv" : "folders";
  }

  showSource() {
    this.$("#site-folders").hidden = this.source !== "folders";
    this.$("#site-csv").hidden = this.source !== "csv";
  }

  setStatus(text, kind = "info") {
    this.status.textContent = text;
    this.status.dataset.kind = kind;
  }

  /** A refusal or a failure, as an alert; "" clears it. */
  say(text) {
    this.message.hidden = !text;
    this.message.textContent = text;
  }

  // --- the profile in use --------------------------------------------------------------------------------------

  /** The stored profile, checked again for the model file in use (at start, and whenever the model file changes):
   * applied only when it passes, and a sentence on the page either way. */
  async restore() {
    const text = storedProfile();
    this.profile = null;
    if (text) {
      try {
        this.profile = await checkProfile(text, "the site profile stored on this device", this.card,
          this.modelFile());
      } catch (e) {
        if (!(e instanceof ProfileError)) throw e;
        this.say(`${e.message}. It is not applied: results are the model's as it comes.`);
      }
    }
    this.showCurrent(Boolean(text));
    this.onProfile(this.profile);
  }

  /** Check `text` and, when it passes, keep it on this device and use it. `how`: what the user did, in words. */
  async adopt(text, name, how) {
    this.say("");
    let profile;
    try {
      profile = await checkProfile(text, name, this.card, this.modelFile());
      storeProfile(text);
    } catch (e) {
      this.say(`${e.message}. Nothing was applied${this.profile ? ": the site profile in use is unchanged" : ""}.`);
      this.root.dataset.state = "refused";
      return false;
    }
    this.profile = profile;
    this.showCurrent(true);
    this.root.dataset.state = "in-use";
    this.setStatus(`Site profile ${how}: results from now on are ${profileSummary(profile).summary}.`);
    this.onProfile(profile);
    return true;
  }

  remove() {
    forgetProfile();
    this.profile = null;
    this.say("");
    this.showCurrent(false);
    this.root.dataset.state = "removed";
    this.setStatus("The site profile was removed from this device: results are the model's as it comes.");
    this.onProfile(null);
  }

  /** The sentence on what is in use. `stored`: whether a profile is kept on this device (in use or not). */
  showCurrent(stored) {
    const p = this.profile;
    this.removeButton.hidden = !stored;
    this.removeButton.textContent = p ? "Stop using the site profile" : "Remove the stored site profile";
    this.current.dataset.state = p ? "in-use" : stored ? "refused" : "none";
    this.current.dataset.site = p ? p.site : "";
    this.current.dataset.created = p ? p.created : "";
    if (!p) {
      this.current.textContent = "No site profile is in use: results are the model's as it comes.";
      return;
    }
    const cv = p.cross_validated;
    this.current.textContent = `In use on this device: results are ${profileSummary(p).summary}. At the site, ` +
      `cross-validated by patient: accuracy ${fixed(cv.before.accuracy, 2)} as the model comes, ` +
      `${fixed(cv.after.accuracy, 2)} calibrated.`;
  }

  // --- validation ----------------------------------------------------------------------------------------------

  /** The films chosen, as site-data.js reads them: {films, missing, data} (data: the source in words). */
  async chosenFilms() {
    const classes = this.card.classes;
    if (this.source === "folders") {
      const folders = this.folders.map((input) => Array.from(input.files ?? []));
      return { films: filmsFromFolders(folders, classes), missing: [], data: "a folder per class" };
    }
    const labels = this.$("#site-labels").files?.[0];
    const files = [...Array.from(this.$("#site-files").files ?? []),
      ...Array.from(this.$("#site-files-folder").files ?? [])];
    if (!labels) {
      throw new SiteDataError("no labels: choose the CSV that labels the films (columns file,label and " +
        "optionally patient_id), or choose a folder per class");
    }
    if (!files.length) throw new SiteDataError(`no films: choose the files ${labels.name} labels`);
    const { films, missing } = filmsFromCsv(await labels.text(), labels.name, files, classes);
    return { films, missing, data: labels.name };
  }

  /** Score one film with the model as it comes (the worker's classify, no profile): its record for
   * site-validation.js, or {unreadable} when it cannot be decoded. Cancelled by a batch of the main view (which
   * cancels queued classifications): asked again. */
  async score(film) {
    for (;;) {
      let result;
      try {
        result = await this.client.request("classify", { file: film.file, name: film.name, display: false });
      } catch (e) {
        return { unreadable: { file: film.name, label: film.label, reason: `internal error: ${e.message}` } };
      }
      if (result.cancelled) continue;
      if (result.error) return { unreadable: { file: film.name, label: film.label, reason: result.error } };
      const d = decide(this.card, result.gate, result.gateReason, result.ood);
      const withheld = Boolean(d.withheld);
      return { scored: {
        file: film.name, label: film.label, patient_id: film.patient_id, logits: result.logits,
        probabilities: result.probabilities, top_class: result.topClass,
        band: band(result.probabilities, withheld, this.card.uncertainty ?? null, d.unlike_training),
        withheld, unlike_training: d.unlike_training,
      } };
    }
  }

  async run() {
    if (this.running) return;
    this.say("");
    if (!this.ready()) {
      this.say("The model is still loading: try again in a moment.");
      return;
    }
    const site = this.$("#site-name").value.trim();
    let chosen;
    try {
      if (!site) throw new SiteDataError("no site name: give the site's name, which every calibrated result shows");
      chosen = await this.chosenFilms();
    } catch (e) {
      if (!(e instanceof SiteDataError)) throw e;
      this.say(e.message);
      this.root.dataset.state = "refused";
      return;
    }
    const modelFile = this.modelFile();
    this.running = true;
    this.$("#site-run").disabled = true;
    this.root.dataset.state = "running";
    this.report.hidden = true;
    this.outcome = null;
    const { films, missing, data } = chosen;
    this.progress.hidden = false;
    this.progress.max = films.length;
    this.progress.value = 0;
    const scored = [], unreadable = [...missing];
    try {
      for (const [i, film] of films.entries()) {
        const outcome = await this.score(film);
        if (outcome.scored) scored.push(outcome.scored);
        else unreadable.push(outcome.unreadable);
        this.progress.value = i + 1;
        this.setStatus(`Scored ${i + 1} of ${films.length} film${films.length === 1 ? "" : "s"}…`);
      }
      this.setStatus("Computing the figures: bootstrap by patient and cross-validated calibration…");
      await new Promise((resolve) => setTimeout(resolve, 0)); // let the page say so before the work
      if (modelFile !== this.modelFile()) throw new Error("the model file changed during the validation: run it again");
      this.outcome = await validateSite(scored, unreadable, this.card, { site, data, modelFile });
    } catch (e) {
      this.say(e instanceof ProfileError ? `Nothing to report: ${e.message}.` : `The validation failed: ${e.message}`);
      this.root.dataset.state = "failed";
      this.setStatus("");
      return;
    } finally {
      this.running = false;
      this.$("#site-run").disabled = false;
      this.progress.hidden = true;
    }
    this.showReport();
  }

  showReport() {
    const { metrics, profile } = /** @type {{metrics: any, profile: any}} */ (this.outcome);
    renderSiteReport(this.report, metrics, profile);
    const actions = document.createElement("div");
    actions.className = "site-actions";
    const button = (id, text, run) => {
      const b = Object.assign(document.createElement("button"), { type: "button", id, textContent: text });
      b.addEventListener("click", run);
      actions.append(b);
      return b;
    };
    if (profile) {
      button("site-use", "Use this calibration on this device", () => this.adopt(profileText(profile),
        "the site profile just fitted", "in use")).classList.add("primary");
      button("site-export", "Export the site profile", () => {
        downloadBlob(new Blob([profileText(profile)], { type: "application/json" }),
          `site-profile-${fileSafe(profile.site)}-${stamp()}.json`);
      });
    }
    button("site-metrics", "Download the figures (metrics.json)", () => {
      downloadBlob(json(metrics), `site-metrics-${fileSafe(metrics.site)}-${stamp()}.json`);
    });
    this.report.append(actions);
    this.report.hidden = false;
    const refused = metrics.profile_refused;
    this.root.dataset.state = "done";
    this.setStatus(`Validated on ${metrics.site_figures.films} films` +
      `${metrics.unreadable.length ? ` (${metrics.unreadable.length} skipped: listed in the report)` : ""}. ` +
      (refused ? `No site profile: ${refused}.` : "A site profile was fitted: use it on this device, or export it."),
    refused || metrics.unreadable.length ? "warn" : "info");
    /** @type {HTMLElement} */ (this.report.querySelector("#site-report-title")).focus();
  }
}

/** The profile's parameters for the worker, and what the page attaches to every result it calibrates. */
export function calibrationOf(profile) {
  return {
    worker: { offsets: profile.parameters.offsets, temperature: profile.parameters.temperature },
    result: { ...profileSummary(profile), band: profile.band, measured: profile.cross_validated.after },
  };
}
