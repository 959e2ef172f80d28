"""report.md of `cxr validate` (and its reliability.svg): the site's figures beside the model card's, the
calibration before and after (cross-validated), the profile, and every film that was skipped."""

from __future__ import annotations

import math
from html import escape

from core.markdown import table


def _pct(value) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.0f}%"


def _num(value, digits: int = 2) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _ci(interval, fmt=_pct) -> str:
    if not interval or any(v is None or (isinstance(v, float) and math.isnan(v)) for v in interval):
        return ""
    return f" ({fmt(interval[0])}-{fmt(interval[1])})"


def _with_ci(value, interval, fmt=_pct) -> str:
    return fmt(value) + _ci(interval, fmt)


def reliability_svg(before: list[dict], after: list[dict] | None = None, size: int = 320) -> str:
    """A reliability diagram: per bin of top probability, the share right (y) against the mean top probability
    (x), one dot per non-empty bin, its area by its films; the diagonal is perfect calibration."""
    pad, inner = 40, size - 60

    def xy(confidence, accuracy):
        return pad + confidence * inner, pad / 2 + (1 - accuracy) * inner

    def dots(bins, colour, label):
        total = sum(b["count"] for b in bins) or 1
        out = []
        for b in bins:
            if b["count"]:
                x, y = xy(b["confidence"], b["accuracy"])
                r = 3 + 9 * math.sqrt(b["count"] / total)
                out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r:.1f}" fill="{colour}" fill-opacity="0.6">'
                           f'<title>{escape(label)}: {b["count"]} films, mean top probability '
                           f'{_pct(b["confidence"])}, right {_pct(b["accuracy"])}</title></circle>')
        return out

    x0, y0 = xy(0, 0)
    x1, y1 = xy(1, 1)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" viewBox="0 0 {size} {size}" '
             'font-family="sans-serif" font-size="11">',
             '<title>Reliability at the site</title>',
             f'<rect x="{x0}" y="{y1}" width="{inner}" height="{inner}" fill="none" stroke="#999"/>',
             f'<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y1}" stroke="#999" stroke-dasharray="4 3"/>',
             f'<text x="{size / 2}" y="{size - 8}" text-anchor="middle">mean top probability</text>',
             f'<text x="12" y="{size / 2}" text-anchor="middle" transform="rotate(-90 12 {size / 2})">share right'
             '</text>']
    for v in (0, 0.5, 1):
        x, y = xy(v, v)
        parts += [f'<text x="{x}" y="{y0 + 14}" text-anchor="middle">{v:g}</text>',
                  f'<text x="{x0 - 6}" y="{y + 4}" text-anchor="end">{v:g}</text>']
    parts += dots(before, "#d95f02", "model as it comes")
    legend = [("#d95f02", "model as it comes")]
    if after:
        parts += dots(after, "#1b9e77", "calibrated (cross-validated)")
        legend.append(("#1b9e77", "calibrated (cross-validated)"))
    for i, (colour, text) in enumerate(legend):
        parts += [f'<circle cx="{x0 + 10}" cy="{y1 + 12 + 14 * i}" r="4" fill="{colour}"/>',
                  f'<text x="{x0 + 18}" y="{y1 + 16 + 14 * i}">{escape(text)}</text>']
    return "\n".join(parts + ["</svg>"]) + "\n"


def _overview(m: dict) -> list[str]:
    site, model, films = m["site"], m["model"], m["site_figures"]
    per_class = ", ".join(f"{c} {n}" for c, n in films["films_per_class"].items())
    lines = [f"# Site validation: {site}", "",
             f"Model **{model['name']} {model['version']}** ({model['file']}, sha256 {model['sha256'][:12]}...), "
             f"on **{films['films']} labelled films of {films['patients']} patients** from `{m['data']}` "
             f"({per_class}); {m['created']}.", ""]
    if m["unreadable"]:
        lines += [f"{len(m['unreadable'])} file(s) could not be read and were skipped: listed at the end.", ""]
    card = m["model_card"]["metrics_test"]
    metrics = films["metrics"]
    lines += [f"At this site the model is right on **{_with_ci(metrics['accuracy'], metrics['ci95']['accuracy'])}** "
              f"of the films (95% CI by patient)" + (f"; on its own test split, {_pct(card['accuracy'])}." if card
                                                      else "."), ""]
    return lines


def _per_class(m: dict) -> list[str]:
    metrics, ci = m["site_figures"]["metrics"], m["site_figures"]["metrics"]["ci95"]
    card = m["model_card"]["metrics_test"] or {}
    rows = []
    for c, v in metrics["per_class"].items():
        theirs = (card.get("per_class") or {}).get(c, {})
        rows.append([c, v["support"],
                     _with_ci(v["recall"], ci.get(f"{c}/recall")), _with_ci(v["precision"], ci.get(f"{c}/precision")),
                     _with_ci(v["specificity"], ci.get(f"{c}/specificity")),
                     _with_ci(v["auc"], ci.get(f"{c}/auc"), _num),
                     " / ".join([_pct(theirs.get("recall")), _pct(theirs.get("precision")), _num(theirs.get("auc"))])])
    rows.append(["all", metrics["n"], f"accuracy {_with_ci(metrics['accuracy'], ci['accuracy'])}", "", "",
                 "macro " + _with_ci(metrics["macro_auc"], ci["macro_auc"], _num),
                 f"accuracy {_pct(card.get('accuracy'))}, macro AUC {_num(card.get('macro_auc'))}" if card else ""])
    return ["## Per class", "",
            "Sensitivity (recall), PPV (precision), specificity and one-vs-rest AUC at this site, each with its 95% "
            "bootstrap CI by patient; the last column is the model card's test split (sensitivity / PPV / AUC). "
            "A class the site did not show has no sensitivity or AUC here.", "",
            table(["class", "films", "sensitivity", "PPV", "specificity", "AUC", "model card (test split)"], rows,
                  "lrrrrrr"), ""]


def _confusion(m: dict) -> list[str]:
    classes = list(m["site_figures"]["films_per_class"])
    rows = [[f"**{c}**", *counts] for c, counts in zip(classes, m["site_figures"]["metrics"]["confusion"])]
    return ["## Confusion matrix", "", "Rows: the label; columns: the model's top class (as it comes).", "",
            table(["label \\ predicted", *classes], rows, "l" + "r" * len(classes)), ""]


def _bands(m: dict) -> list[str]:
    bands = m["site_figures"]["bands"]
    theirs = m["model_card"]["bands_test"] or {}
    rule = m["model_card"]["uncertainty_rule"] or {}
    rows = [[name, bands[name]["n"], _with_ci(bands[name]["value"], bands[name]["ci95"]),
             _pct((theirs.get(name) or {}).get("accuracy"))] for name in ("confident", "uncertain")]
    withheld, unlike = bands["withheld"], bands["unlike_training"]
    threshold = rule.get("threshold")
    rule_text = (f"uncertain below a top probability of {_pct(threshold)}" if threshold is not None
                 else "no rule: every result uncertain" if rule else "no rule in this model's card")
    return ["## Confident and uncertain results", "",
            f"The model's rule ({rule_text}), applied to this site's films: how often each band was right.", "",
            table(["band", "films", "right (95% CI)", "model card (test split)"], rows, "lrrr"), "",
            f"Given no class at all (withheld: not a chest film, or unlike the training X-rays for a model without "
            f"a chest gate): {withheld['n']} of {m['site_figures']['films']} films, "
            f"{_with_ci(withheld['value'], withheld['ci95'])}. Shown but marked unlike the training films (always "
            f"uncertain): {unlike['n']}, {_with_ci(unlike['value'], unlike['ci95'])}.", ""]


def _reliability(m: dict) -> list[str]:
    before = m["reliability"]["before"]
    after = m["reliability"].get("after")
    head = ["top probability", "films", "mean top probability", "right"]
    rows = []
    for i, b in enumerate(before["bins"]):
        row = [f"{_pct(b['lo'])}-{_pct(b['hi'])}", b["count"], _pct(b["confidence"]), _pct(b["accuracy"])]
        if after:
            a = after["bins"][i]
            row += [a["count"], _pct(a["confidence"]), _pct(a["accuracy"])]
        if b["count"] or (after and after["bins"][i]["count"]):
            rows.append(row)
    if after:
        head += ["films (calibrated)", "mean top probability (calibrated)", "right (calibrated)"]
    ece = f"Expected calibration error: {_num(before['ece'], 3)} as it comes" + (
        f", {_num(after['ece'], 3)} calibrated (cross-validated)." if after else ".")
    return ["## Reliability", "", "![reliability](reliability.svg)", "",
            "Films grouped by their top probability: a well calibrated model is right as often as it says.", "",
            table(head, rows, "l" + "r" * (len(head) - 1)), "", ece, ""]


def _calibration(m: dict, profile: dict | None) -> list[str]:
    if not profile:
        return ["## Site calibration", "", f"**No site profile was written**: {m['profile_refused']}", ""]
    cv = profile["cross_validated"]
    before, after = cv["before"], cv["after"]
    classes = profile["classes"]

    def band_cell(f, name):
        return f"{_pct(f[name]['accuracy'])} of {f[name]['n']}"

    rows = [["accuracy", _with_ci(before["accuracy"], before["accuracy_ci95"]),
             _with_ci(after["accuracy"], after["accuracy_ci95"])],
            ["macro AUC", _with_ci(before["macro_auc"], before["macro_auc_ci95"], _num),
             _with_ci(after["macro_auc"], after["macro_auc_ci95"], _num)],
            *[[f"sensitivity {c}", _pct(before["sensitivity"][c]), _pct(after["sensitivity"][c])] for c in classes],
            ["mean negative log likelihood", _num(before["nll"], 3), _num(after["nll"], 3)],
            ["expected calibration error", _num(before["ece"], 3), _num(after["ece"], 3)],
            ["confident results right", band_cell(before, "confident"), band_cell(after, "confident")],
            ["uncertain results right", band_cell(before, "uncertain"), band_cell(after, "uncertain")]]
    parameters = profile["parameters"]
    offsets = ", ".join(f"{c} {v:+.3f}" for c, v in zip(classes, parameters["offsets"]))
    fitted = parameters["fitted"]
    unfitted = [c for c in classes if c not in fitted["classes"]]
    rule = (profile["band"] or {}).get("rule") or {}
    band_text = ("no band (the model has no rule)" if not profile["band"] else
                 f"chosen on this site's films: uncertain below {_pct(rule['threshold'])}"
                 if profile["band"]["chosen_on"] == "site" and rule.get("threshold") is not None else
                 "chosen on this site's films: no level reached the target, every result is uncertain"
                 if profile["band"]["chosen_on"] == "site" else
                 f"the model's own (fewer than {profile['prior']['min_films_band']} films to choose one here)")
    return ["## Site calibration", "",
            f"`site-profile.json` calibrates this model for **{profile['site']}**: per-class logit offsets"
            + (" and a temperature" if fitted["temperature"] else "") + ", pulled towards no change, fitted on the "
            f"{profile['films']} films. The figures below are **cross-validated by patient** ({cv['method']}, "
            f"{cv['folds']} fits): every film was scored by a calibration fitted on the other patients' films only, "
            "never on itself.", "",
            table(["on this site's films", "as it comes", "calibrated (cross-validated)"], rows, "lrr"), "",
            f"- Offsets added to the logits: {offsets}"
            + (f" ({', '.join(unfitted)}: not shown by the site, kept neutral)" if unfitted else "") + ".",
            f"- Temperature: {parameters['temperature']:.3f} x the model's {parameters['model_temperature']:.3f}"
            + ("" if fitted["temperature"] else
               f" (not fitted: it needs {profile['prior']['min_films_temperature']} films of 2 classes)") + ".",
            f"- Uncertainty band: {band_text}.",
            "- The offsets also carry this set's class mix: give films in the proportions the site sees, or expect "
            "the calibration to lean towards the classes given most.", ""]


def _unreadable(m: dict) -> list[str]:
    if not m["unreadable"]:
        return []
    rows = [[f"`{u['file']}`", u["label"], u["reason"]] for u in m["unreadable"]]
    return ["## Skipped: unreadable files", "", table(["file", "label", "reason"], rows), ""]


def report(m: dict, profile: dict | None) -> str:
    """The Markdown report of metrics.json's content `m` and the site profile (None when it was refused)."""
    lines = (_overview(m) + _per_class(m) + _confusion(m) + _bands(m) + _reliability(m) + _calibration(m, profile)
             + _unreadable(m))
    lines += ["---", "", "Research software, not a medical device. These figures describe these films only; a site's "
              "acceptance of the tool also needs the clinical review these numbers cannot replace."]
    return "\n".join(lines) + "\n"
