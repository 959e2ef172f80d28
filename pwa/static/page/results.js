// @ts-check
// The results table: one row per file, filled in as the worker answers. Each row carries its result in data-*
// attributes too (full-precision probabilities, the class shown, the raw top class, band, OOD flag, hottest cell,
// error), for scripts and tests. What a row states comes from verdict.js: an out-of-distribution file shows no
// class and no probabilities, only why they are withheld. A result calibrated by a site profile says for which site
// in its "Site calibration" cell (the column shows only while a batch has calibrated results).
import { el, percent } from "./format.js";
import { verdict } from "./verdict.js";

export class ResultsTable {
  constructor(tbody, card, onShow) {
    this.tbody = tbody;
    this.card = card;
    this.classes = card.classes;
    this.onShow = onShow;
    this.rows = [];
  }

  /** One pending row per file. Long names are cut with an ellipsis on screen; the title and the Show button's
   * label keep the whole name. */
  reset(files) {
    this.tbody.replaceChildren();
    this.tbody.closest("table")?.removeAttribute("data-calibrated");
    this.rows = files.map((file, index) => {
      const button = el("button", { type: "button", className: "small", disabled: true, textContent: "Show" });
      button.setAttribute("aria-label", `Show ${file.name}`);
      button.addEventListener("click", () => this.onShow(index));
      const tr = el("tr", { dataset: { index: String(index), file: file.name, status: "pending" } },
        el("th", { scope: "row", className: "file-name", title: file.name },
          el("span", { className: "truncate", textContent: file.name })),
        this.classes.map(() => el("td", { className: "num", textContent: "…" })),
        el("td", { className: "prediction-cell", textContent: "" }),
        el("td", { className: "withheld-cell", textContent: "" }),
        el("td", { className: "error-cell", textContent: "" }),
        el("td", { className: "site-cell", textContent: "" }),
        el("td", {}, button));
      this.tbody.append(tr);
      return { name: file.name, file, tr, button };
    });
  }

  /** Fill row `index` with a worker result ({probabilities, ...} or {error}). */
  update(index, result) {
    const row = this.rows[index];
    if (!row) return;
    Object.assign(row, result, { name: row.name });
    const cells = row.tr.children;
    const n = this.classes.length;
    if (result.error) {
      row.tr.dataset.status = "error";
      row.tr.dataset.error = result.error;
      for (let i = 0; i <= n; i++) cells[1 + i].textContent = "–";
      cells[2 + n].textContent = "";
      cells[3 + n].textContent = result.error;
      cells[4 + n].textContent = "";
      return;
    }
    const v = verdict(result, this.card);
    row.verdict = v;
    Object.assign(row.tr.dataset, {
      status: "done",
      probabilities: JSON.stringify(result.probabilities),
      class: v.shownClass,
      topClass: v.topClass,
      band: v.band ?? "",
      withheld: v.withheld,
      gate: result.gate === null || result.gate === undefined ? "" : String(result.gate),
      gateReason: v.gateReason,
      unlike: String(v.unlike),
      siteProfile: v.site?.summary ?? "",
      logits: JSON.stringify(result.logits ?? null),
      ood: String(result.ood),
      oodScore: String(result.oodScore),
      hottestRow: String(result.hottest[0]),
      hottestCol: String(result.hottest[1]),
      ...(result.lungs ? { lungEvidence: String(result.lungs.evidence), lungFallback: String(result.lungs.fallback),
        lungLow: String(result.lungs.low), cropBox: JSON.stringify(result.cropBox) } : {}),
      width: String(result.width),
      height: String(result.height),
      model: result.model,
      decodeMs: result.timings.decode.toFixed(1),
      inferenceMs: result.timings.inference.toFixed(1),
      totalMs: result.timings.total.toFixed(1),
    });
    result.probabilities.forEach((p, i) => { cells[1 + i].textContent = v.withheld ? "–" : percent(p); });
    cells[1 + n].textContent = v.label;
    cells[1 + n].classList.toggle("uncertain", v.band === "uncertain");
    cells[2 + n].textContent = v.withheld;
    cells[2 + n].classList.toggle("warn", Boolean(v.withheld));
    cells[3 + n].textContent = "";
    cells[4 + n].textContent = v.site ? `${v.site.site} (${v.site.films} films, ${v.site.created.slice(0, 10)})` : "";
    if (v.site) this.tbody.closest("table")?.setAttribute("data-calibrated", "true");
    row.button.disabled = false;
  }

  select(index) {
    this.rows.forEach((row, i) => row.tr.classList.toggle("selected", i === index));
  }

  get results() {
    return this.rows;
  }
}
