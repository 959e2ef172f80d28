"""`cxr lungs-evaluate`: how well the lung segmenter finds the lungs, where masks exist and where they do not.

- Held-out masks (the test split by patient of ../shared/data/lungmasks): Dice and IoU per image at 160 x 160,
  with 95% bootstrap CIs over patients.
- Contact sheets (PNG) of predicted masks (outline) and lung boxes: held-out masked films (true outline too),
  NIH Normal and NIH Pneumonia films and Hannover films (no masks exist for them: look), and photographs.
- For each group, how often the mask is implausible, so the graph would fall back to the whole image.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from core.decode import decode
from core.jsonio import write_json
from core.markdown import table
from core.metrics import patient_resamples, percentile_interval

from ..graph.lungs import LUNG_SIZE, load_segmenter, lung_box
from ..graph.preprocess import resize
from ..loop.lungs import load_pairs, mask_table, read_masks

THUMB = 128


def overlap(pred: torch.Tensor, true: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per image Dice and IoU of binary masks [N,1,s,s]."""
    inter = (pred * true).sum((1, 2, 3))
    total = pred.sum((1, 2, 3)) + true.sum((1, 2, 3))
    union = total - inter
    dice = torch.where(total > 0, 2 * inter / total.clamp(min=1e-9), torch.ones_like(total))
    iou = torch.where(union > 0, inter / union.clamp(min=1e-9), torch.ones_like(union))
    return dice.numpy(), iou.numpy()


def _with_ci(values: np.ndarray, patients: list[str], n_boot: int) -> dict:
    samples = [values[c].mean() for c in patient_resamples(patients, n_boot)]
    return {"mean": float(values.mean()), "ci95": percentile_interval(samples), "min": float(values.min()),
            "n": int(len(values))}


def _outline(mask: np.ndarray) -> np.ndarray:
    """The boundary pixels of a binary mask."""
    m = mask.astype(bool)
    inner = m.copy()
    inner[1:-1, 1:-1] = m[1:-1, 1:-1] & m[:-2, 1:-1] & m[2:, 1:-1] & m[1:-1, :-2] & m[1:-1, 2:]
    return m & ~inner


def contact_sheet(images: torch.Tensor, probs: torch.Tensor, rules, path: Path, truth: torch.Tensor | None = None,
                  columns: int = 6) -> None:
    """Thumbnails with the predicted outline (red), the true one (green) and the lung box (yellow; dashed red
    frame: the mask is implausible and the graph would use the whole image)."""
    boxes, fallback = lung_box(probs, rules)
    rows = -(-len(images) // columns)
    sheet = Image.new("RGB", (columns * THUMB, rows * THUMB), "black")
    for i in range(len(images)):
        gray = F.interpolate(images[i : i + 1], size=(THUMB, THUMB), mode="area")[0, 0].numpy()
        rgb = np.repeat(np.clip(gray, 0, 255).astype(np.uint8)[..., None], 3, 2)
        pred = F.interpolate(probs[i : i + 1], size=(THUMB, THUMB), mode="bilinear")[0, 0].numpy() > 0.5
        rgb[_outline(pred)] = (255, 40, 40)
        if truth is not None:
            true = F.interpolate(truth[i : i + 1], size=(THUMB, THUMB), mode="area")[0, 0].numpy() > 0.5
            rgb[_outline(true)] = (40, 255, 40)
        tile = Image.fromarray(rgb)
        draw = ImageDraw.Draw(tile)
        x0, y0, x1, y1 = (boxes[i] * (THUMB - 1)).tolist()
        if fallback[i]:
            draw.rectangle([1, 1, THUMB - 2, THUMB - 2], outline=(255, 40, 40), width=2)
        else:
            draw.rectangle([x0, y0, x1, y1], outline=(255, 220, 0), width=1)
        sheet.paste(tile, ((i % columns) * THUMB, (i // columns) * THUMB))
    sheet.save(path, optimize=True)


def _films(manifest: Path, source: str, label: str | None, n: int, seed: int = 0) -> list[str]:
    with open(manifest, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["source"] == source and (label is None or r["label"] == label)]
    chosen = np.random.default_rng(seed).choice(len(rows), min(n, len(rows)), replace=False)
    return [str((manifest.parent / rows[i]["file"]).resolve()) for i in sorted(chosen)]


def _photographs() -> list[np.ndarray]:
    import skimage.data

    out = []
    for name in ("chelsea", "coffee", "astronaut", "camera", "rocket", "horse"):
        image = getattr(skimage.data, name)()
        image = image.astype(np.uint8) * 255 if image.dtype == bool else image
        out.append(np.asarray(Image.fromarray(image).convert("L"), np.float32))
    return out


@torch.no_grad()
def _predict(model, grays: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.cat([resize(torch.as_tensor(g)[None, None], LUNG_SIZE) for g in grays])
    return images, torch.sigmoid(torch.cat([model(images[i : i + 16]) for i in range(0, len(images), 16)]))


def evaluate_segmenter(weights: Path, masks_roots: Path | list[Path], data_root: Path, out: Path,
                       n_boot: int = 1000) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model, rules, info = load_segmenter(weights)
    rows = [r for r in read_masks(masks_roots, info.get("seed", 0)) if r["split"] == "test"]
    images, truth = load_pairs(rows)
    with torch.no_grad():
        probs = torch.cat([torch.sigmoid(model(images[i : i + 16])) for i in range(0, len(images), 16)])
    dice, iou = overlap((probs > 0.5).float(), truth)
    patients = [r["patient_id"] for r in rows]
    result = {"weights": str(weights), "rules": rules.as_dict(), "held_out_masks": {
        "dice": _with_ci(dice, patients, n_boot), "iou": _with_ci(iou, patients, n_boot),
        "patients": len(set(patients)), "by_source": {}}}
    for source in sorted({r["source"] for r in rows}):  # Dice per source: COVID-19 films and normal films apart
        mine = np.array([r["source"] == source for r in rows])
        result["held_out_masks"]["by_source"][source] = {
            "label": sorted({r["label"] for r, m in zip(rows, mine) if m}),
            "dice": _with_ci(dice[mine], [p for p, m in zip(patients, mine) if m], n_boot)}
    contact_sheet(images, probs, rules, out / "lungs-held-out-masks.png", truth)
    groups = {"held-out masked films": probs}
    cxr, hannover = Path(data_root) / "cxr" / "manifest.csv", Path(data_root) / "hannover" / "manifest.csv"
    for name, files in (("nih-normal", _films(cxr, "nih", "Normal", 18)),
                        ("nih-pneumonia", _films(cxr, "nih", "Pneumonia", 18)),
                        ("hannover", _films(hannover, "hannover", None, 18, seed=1) if hannover.exists() else [])):
        if files:
            imgs, p = _predict(model, [decode(f) for f in files])
            contact_sheet(imgs, p, rules, out / f"lungs-{name}.png")
            groups[name] = p
    imgs, p = _predict(model, _photographs())
    contact_sheet(imgs, p, rules, out / "lungs-photographs.png")
    groups["photographs"] = p
    result["fallback_rate"] = {name: float(lung_box(p, rules)[1].mean()) for name, p in groups.items()}
    result["fallback_n"] = {name: int(len(p)) for name, p in groups.items()}
    write_json(out / "metrics.json", result)
    (out / "report.md").write_text(report(result))
    return result


def report(r: dict) -> str:
    m = r["held_out_masks"]
    lines = ["# Lung segmenter", "",
             f"Held-out masks (test split by patient, {m['dice']['n']} films of {m['patients']} patients), at "
             f"{LUNG_SIZE} x {LUNG_SIZE}:", "",
             table(["measure", "mean [95% CI]", "worst image"],
                   [[k, f"{m[k]['mean']:.3f} [{m[k]['ci95'][0]:.3f}, {m[k]['ci95'][1]:.3f}]", f"{m[k]['min']:.3f}"]
                    for k in ("dice", "iou")], "lrr"), "",
             "Dice per source of the held-out masks:", "",
             table(["source", "labels", "films", "Dice mean [95% CI]", "worst"],
                   [[src, ", ".join(v["label"]), v["dice"]["n"],
                     f"{v['dice']['mean']:.3f} [{v['dice']['ci95'][0]:.3f}, {v['dice']['ci95'][1]:.3f}]",
                     f"{v['dice']['min']:.3f}"] for src, v in m["by_source"].items()], "llrrr"), "",
             "Implausible masks (the graph falls back to the whole image):", "",
             table(["images", "n", "fallback"], [[k, r["fallback_n"][k], f"{100 * v:.0f}%"]
                                                 for k, v in r["fallback_rate"].items()], "lrr"), ""]
    return "\n".join(lines)


def mask_index(masks_root: Path) -> dict[str, str]:
    """Radiograph path (resolved) -> its lung mask's path, from a mask folder's table."""
    masks_root = Path(masks_root)
    with open(mask_table(masks_root), newline="") as f:
        return {str((masks_root / r["image"]).resolve()): str((masks_root / r["mask"]).resolve())
                for r in csv.DictReader(f)}


@torch.no_grad()
def _true_share(cam: torch.Tensor, mask: torch.Tensor, box: torch.Tensor) -> float:
    from ..graph.lungs import evidence_in_lungs

    return float(evidence_in_lungs(cam, mask, box)[0])


def evidence_against_true_masks(checkpoint, files: list[str], masks_root: Path) -> dict | None:
    """For test films that have a drawn lung mask: the share of the predicted class's Grad-CAM mass inside the
    true lungs, with the CAM placed where the model looked (its lung box, when it crops). None without masks."""
    from ..graph.lungs import full_box
    from ..model.gradcam import gradcam

    index = mask_index(masks_root)
    chosen = [f for f in files if str(Path(f).resolve()) in index]
    if not chosen:
        return None
    classifier, preprocessing = checkpoint.classifier(), checkpoint.preprocessing()
    lungs = preprocessing.geometry.lungs
    shares = []
    for file in chosen:
        x = torch.as_tensor(decode(file))[None, None]
        truth = torch.as_tensor(np.asarray(Image.open(index[str(Path(file).resolve())]).convert("L"), np.float32)
                                / 255)[None, None]
        box = lungs(x)[4] if lungs is not None else full_box(x)
        inputs = preprocessing(x)
        with torch.enable_grad():
            cams = gradcam(classifier, inputs)
        k = int(classifier(inputs).argmax(1))
        shares.append(_true_share(cams[:, k], truth, box))
    shares = np.array(shares)
    return {"images": len(shares), "mean": float(shares.mean()), "median": float(np.median(shares)),
            "below_half": float((shares < 0.5).mean())}
