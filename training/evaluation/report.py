"""The evaluation report: metrics.json in Markdown, for people."""

from __future__ import annotations

import math

from core.markdown import table


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def fmt(value, ci=None, digits: int = 3, ci_digits: int | None = None) -> str:
    """A metric with its CI as "0.812 [0.700, 0.901]"; "n/a" where undefined (NaN or None, as JSON has it)."""
    if _missing(value):
        return "n/a"
    text = f"{value:.{digits}f}"
    if ci and not any(_missing(c) for c in ci):
        d = digits if ci_digits is None else ci_digits
        text += f" [{ci[0]:.{d}f}, {ci[1]:.{d}f}]"
    return text


def metrics_table(m: dict) -> list[str]:
    ci = m.get("ci95", {})
    rows = [[c, v["support"], *(fmt(v[k], ci.get(f"{c}/{k}")) for k in ("recall", "precision", "specificity", "f1",
                                                                          "auc"))]
            for c, v in m["per_class"].items()]
    return [f"Images: {m['n']}. Accuracy {fmt(m['accuracy'], ci.get('accuracy'))}, "
            f"macro AUC {fmt(m['macro_auc'], ci.get('macro_auc'))}.", "",
            table(["class", "n", "sensitivity", "PPV", "specificity", "F1", "AUC"], rows, "lrlllll")]


def report_markdown(r: dict) -> str:
    lines = [f"# Evaluation on the {r['split']} split", "",
             f"Model: {r['arch']}, weights origin: {r['weights_origin']}. {r['images']} images from {r['patients']} "
             f"patients. Brackets: 95% confidence intervals by bootstrap over patients ({r['bootstrap']} resamples).",
             "", "**Not a diagnostic device.** Per-source results matter: when a label comes mostly from one source, "
             "a model can learn the source instead of the disease.", "", "## All images", ""]
    lines += metrics_table(r["all"])
    for source, m in r["by_source"].items():
        lines += ["", f"## Source: {source}", ""] + metrics_table(m)
    if r["within_source"]:
        lines += ["", "## Within-source discrimination", "",
                  "AUC between two labels inside one source, where the source cannot give the answer away.", "",
                  table(["source", "labels", "n", "AUC [95% CI]"],
                        [[w["source"], w["pair"], ", ".join(f"{k} {v}" for k, v in w["n"].items()),
                          fmt(w["auc"], w["ci95"])] for w in r["within_source"]])]
    if r["source_probe"]:
        probe = r["source_probe"]
        lines += ["", "## Source probe", "", "Logistic regression on the frozen pooled features predicting the data "
                  "source, 5-fold cross-validated by patient, over all splits. Lower means fewer source cues reach "
                  "the classifier.", "",
                  table(["images", "n", "accuracy", "balanced accuracy", "chance accuracy"],
                        [[name, p["n"], f"{p['accuracy']:.3f}", f"{p['balanced_accuracy']:.3f}",
                          f"{p['chance_accuracy']:.3f}"]
                         for name, p in [("all", probe["all"])] + [(f"{k} only", v)
                                                                   for k, v in probe["within_label"].items()] if p],
                        "lrrrr")]
    lines += ["", "## Robustness", "", f"Uniform noise of +-{r['noise_sensitivity']['levels']:g} grey levels changes "
              f"the predicted class of {100 * r['noise_sensitivity']['changed_top1']:.1f}% of these images."]
    if r.get("reencoding"):
        lines += ["", "The same image re-encoded (from its original file, decoded again): the largest change of any "
                  "class probability, mean and 95th percentile over images, and the share whose top class changes.",
                  "", table(["re-encoding", "n", "mean change", "95th percentile", "top class changed"],
                            [[c, v["n"], f"{v['mean_abs_change']:.3f}", f"{v['p95_abs_change']:.3f}",
                              f"{100 * v['top1_changed']:.1f}%"] for c, v in r["reencoding"].items()], "lrrrr")]
    c = r["calibration"]
    lines += ["", "## Calibration", "",
              f"Temperature {r['temperature']:.3f} (fitted on validation). On this split: NLL {c['nll_before']:.3f} -> "
              f"{c['nll_after']:.3f}, ECE {c['ece_before']:.3f} -> {c['ece_after']:.3f}.", "",
              "## Out-of-distribution flag", "",
              f"{100 * r['ood']['flagged_rate']:.1f}% of these images score above the OOD threshold "
              f"({r['ood']['threshold']:.1f}, the {r['ood']['percentile']:g}th percentile of validation scores)."]
    if r["pointing_game"]:
        p = r["pointing_game"]
        lines += ["", "## Pointing game", "", f"Of {p['images']} correctly classified images with a lesion mask, the "
                  f"hottest Grad-CAM cell of the predicted class overlaps the lesion in {p['cell_hits']} "
                  f"({100 * p['cell_rate']:.1f}%), and the hottest point of the upsampled map lies inside it in "
                  f"{p['point_hits']} ({100 * p['point_rate']:.1f}%)."]
    lines += ["", "## Figures", ""] + [f"![{k}]({v})" for k, v in r["figures"].items()]
    if r["gradcam_overlays"]:
        lines += ["", "## Grad-CAM (predicted class)", ""] + [f"![]({p})" for p in r["gradcam_overlays"]]
    return "\n".join(lines) + "\n"


