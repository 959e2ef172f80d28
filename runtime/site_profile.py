"""The site profile: a small JSON file that calibrates one model for one site (`cxr validate` writes it; `cxr predict
--site-profile`, `cxr api --site-profile` and the app apply it). Its fields (runtime/site-profile.schema.json):

    format, kind ("site-profile")
    model            {name, version, sha256}: the model it was fitted for (sha256 of the ONNX file); refused with
                     any other
    site, created    the site's name, and when (UTC, 2026-12-08T10:00:00Z)
    classes          the model's classes, in its order
    films, patients, films_per_class
    parameters       {offsets: [K], temperature: t, model_temperature: T, fitted: {classes, temperature}}
    band             the uncertainty rule used with this profile (chosen on the site's films, or the model's own)
    prior            the regularisation it was fitted with
    cross_validated  {method, folds, before, after}: the figures on the site's films, each scored by a calibration
                     fitted on the other patients only
    content_sha256   sha256 of the canonical JSON of every other field: a file edited by hand is refused

Applying it: `apply_profile` (the formula is runtime.site_calibration.calibrated_probabilities).

The canonical JSON is RFC 8785's (JCS): keys sorted, no whitespace, numbers as ECMAScript writes them, strings as
JSON.stringify writes them. In the browser it is `JSON.stringify` of the object with its keys sorted recursively,
so both sides compute the same checksum. The checksum catches edits and damage, not forgery: whoever can edit the
file can recompute it.
"""

from __future__ import annotations

import hashlib
import json
import math
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from core.checksum import sha256_file

from . import site_calibration as calibration_rules
from .bands import band
from .site_calibration import calibrated_probabilities, cross_validate, figures, fit

FORMAT = 1
KIND = "site-profile"
MIN_FILMS = 10
MIN_CLASSES = 2
SCHEMA = Path(__file__).with_name("site-profile.schema.json")
CHECKSUM = "content_sha256"


def check_site_labels(labels, classes) -> None:
    """Refuse what no profile can be fitted from, saying what is needed: labels outside the model's classes, fewer
    than MIN_FILMS films, fewer than MIN_CLASSES classes among them."""
    labels = [str(label) for label in labels]
    unknown = sorted(set(labels) - set(classes))
    if unknown:
        raise ValueError(f"labels {', '.join(map(repr, unknown))} are not classes of this model "
                         f"({', '.join(classes)})")
    if len(labels) < MIN_FILMS:
        raise ValueError(f"{len(labels)} labelled film(s): a site profile needs at least {MIN_FILMS} readable "
                         f"labelled films, of at least {MIN_CLASSES} classes")
    shown = sorted(set(labels), key=list(classes).index)
    if len(shown) < MIN_CLASSES:
        raise ValueError(f"every film is labelled {shown[0]}: a site profile needs films of at least {MIN_CLASSES} "
                         f"classes (of {', '.join(classes)})")


def fit_profile(logits, labels, patients, card: dict, site: str, *, model_sha256: str, withheld=None,
                unlike_training=None, n_boot: int = 1000, seed: int = 0, created: str | None = None) -> dict:
    """The site profile of these films: `logits` [n, K] (the graph's output), `labels` (class names of `card`),
    `patients` (one id per film; a film's own id where none is known), `withheld` (films the predictor gave no
    class) and `unlike_training` (films it marked so): both left out of the band's choice, as the OOD films are at
    export. Raises ValueError (check_site_labels) when it cannot be fitted."""
    classes = list(card["classes"])
    check_site_labels(labels, classes)
    if not str(site).strip():
        raise ValueError("a site profile needs a site name")
    z = np.asarray(logits, np.float64)
    if z.shape != (len(labels), len(classes)) or not np.isfinite(z).all():
        raise ValueError(f"logits must be finite, one row of {len(classes)} per film")
    y = np.array([classes.index(str(label)) for label in labels])
    patients = np.asarray(patients).astype(str)
    if len(set(patients.tolist())) < 2:
        raise ValueError("every film is of one patient: a site profile needs films of at least 2 patients (its "
                         "figures are cross-validated by patient)")
    withheld = np.zeros(len(y), bool) if withheld is None else np.asarray(withheld, bool)
    unlike = np.zeros(len(y), bool) if unlike_training is None else np.asarray(unlike_training, bool)
    calibration = fit(z, y, withheld | unlike, card)
    checked = cross_validate(z, y, patients, withheld, card, seed, unlike)
    before = calibrated_probabilities(z, np.zeros(len(classes)), card["temperature"])
    before_bands = [band(p, bool(w), card.get("uncertainty"), bool(u)) for p, w, u in zip(before, withheld, unlike)]
    profile = {
        "format": FORMAT, "kind": KIND,
        "model": {"name": card["name"], "version": card["version"], "sha256": model_sha256},
        "site": str(site).strip(),
        "created": created or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "classes": classes,
        "films": int(len(y)),
        "patients": int(len(set(patients.tolist()))),
        "films_per_class": {c: int((y == k).sum()) for k, c in enumerate(classes)},
        "parameters": {
            "offsets": [float(v) for v in calibration.offsets], "temperature": float(calibration.temperature),
            "model_temperature": float(card["temperature"]),
            "fitted": {"classes": [classes[k] for k in calibration.fitted_classes],
                       "temperature": calibration.fitted_temperature}},
        "band": calibration.band,
        "prior": {"offset": calibration_rules.OFFSET_PRIOR, "temperature": calibration_rules.TEMPERATURE_PRIOR,
                  "min_films_temperature": calibration_rules.MIN_FILMS_TEMPERATURE,
                  "min_films_band": calibration_rules.MIN_FILMS_BAND},
        "cross_validated": {
            "method": checked["method"], "folds": checked["folds"],
            "note": "each film scored by a calibration fitted on the other patients' films only",
            "before": figures(y, before, before_bands, patients, classes, n_boot, seed),
            "after": figures(y, checked["probabilities"], checked["bands"], patients, classes, n_boot, seed)},
    }
    return sign(profile)


def canonical_json(value) -> str:
    """RFC 8785 (JCS) text of `value`: what JSON.stringify writes for it with every object's keys sorted."""
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return _ecmascript_number(float(value))
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict):
        return "{" + ",".join(f"{canonical_json(str(k))}:{canonical_json(v)}" for k, v in sorted(value.items())) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(canonical_json(v) for v in value) + "]"
    raise ValueError(f"{type(value).__name__} has no JSON form")


def _ecmascript_number(x: float) -> str:
    """Number::toString of ECMAScript: the shortest digits that read back as x (Python's repr finds the same), laid
    out as JavaScript does (1 not 1.0, 0.00001 not 1e-05, 1e-7 not 1e-07, 1e+21)."""
    if not math.isfinite(x):
        raise ValueError("JSON has no NaN or infinity")
    if x == 0:
        return "0"
    sign, x = ("-", -x) if x < 0 else ("", x)
    mantissa, _, exponent = repr(x).partition("e")
    whole, _, fraction = mantissa.partition(".")
    if fraction == "0":
        fraction = ""
    digits = whole + fraction
    zeros = len(digits) - len(digits.lstrip("0"))
    digits = digits.strip("0")
    n = len(whole) + int(exponent or 0) - zeros  # x = 0.digits * 10^n
    k = len(digits)
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        text = "0." + "0" * -n + digits
    else:
        e = n - 1
        text = digits[0] + ("." + digits[1:] if k > 1 else "") + "e" + ("+" if e > 0 else "-") + str(abs(e))
    return sign + text


def content_sha256(profile: dict) -> str:
    """sha256 of the canonical JSON of every field but the checksum itself."""
    body = {k: v for k, v in profile.items() if k != CHECKSUM}
    return hashlib.sha256(canonical_json(body).encode("utf-8")).hexdigest()


def sign(profile: dict) -> dict:
    """The profile with its checksum (NaN, which JSON cannot hold, becomes null first)."""
    from core.jsonio import plain

    profile = plain({k: v for k, v in profile.items() if k != CHECKSUM})
    return {**profile, CHECKSUM: content_sha256(profile)}


def write_profile(path: Path, profile: dict) -> None:
    Path(path).write_text(json.dumps(profile, indent=2, ensure_ascii=False, allow_nan=False) + "\n")


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def load_profile(path: Path, card: dict, model_sha256: str) -> dict:
    """The profile in `path`, checked: well formed (the schema), untouched since it was written (its checksum), and
    fitted for this model (`card`'s name and version, `model_sha256` of its ONNX file) and its classes. Raises
    ValueError naming the file and the reason; nothing is applied from a file refused."""
    import jsonschema

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"{path}: no such site profile") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: cannot read the site profile ({e})") from None
    try:
        profile = json.loads(text, parse_constant=_refuse_constant)
    except ValueError as e:
        raise ValueError(f"{path}: not a site profile: not valid JSON ({e})") from None
    if not isinstance(profile, dict) or profile.get("kind") != KIND:
        raise ValueError(f"{path}: not a site profile (no \"kind\": \"{KIND}\"; `cxr validate` writes one)")
    if profile.get("format") != FORMAT:
        raise ValueError(f"{path}: site profile format {profile.get('format')!r}, this version reads format {FORMAT}")
    errors = sorted(jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text())).iter_errors(profile),
                    key=lambda e: list(e.absolute_path))
    if errors:
        where = "/".join(str(p) for p in errors[0].absolute_path) or "the top level"
        raise ValueError(f"{path}: malformed site profile: {errors[0].message} (at {where})")
    if profile[CHECKSUM] != content_sha256(profile):
        raise ValueError(f"{path}: the site profile was changed after it was written (its {CHECKSUM} does not match "
                         "its content): fit it again with `cxr validate` rather than editing it")
    fitted, this = profile["model"], {"name": card["name"], "version": card["version"], "sha256": model_sha256}
    if fitted != this:
        differ = [k for k in ("name", "version", "sha256") if fitted[k] != this[k]]
        raise ValueError(f"{path}: the site profile was fitted for another model ({fitted['name']} "
                         f"{fitted['version']}, sha256 {fitted['sha256'][:12]}...), not this one ({this['name']} "
                         f"{this['version']}, sha256 {this['sha256'][:12]}...; {', '.join(differ)} differ): "
                         "validate this model at the site to get its own profile")
    classes = list(card["classes"])
    k = len(classes)
    if (profile["classes"] != classes or len(profile["parameters"]["offsets"]) != k
            or set(profile["films_per_class"]) != set(classes)):
        raise ValueError(f"{path}: malformed site profile: its classes, offsets or films per class do not match "
                         f"the model's {k} classes ({', '.join(classes)})")
    return profile


def load_profile_for_model(path: Path, model: Path) -> dict:
    """load_profile for the ONNX file `model` (its model.json beside it, its own sha256)."""
    model = Path(model)
    card_path = model.parent / "model.json"
    if not card_path.exists():
        raise FileNotFoundError(f"{card_path} not found: the model file must sit beside its model.json")
    return load_profile(path, json.loads(card_path.read_text()), sha256_file(model))


def apply_profile(logits, profile: dict, card: dict) -> np.ndarray:
    """Calibrated probabilities (float64, [K] or [n, K]) of logits under a loaded profile:
    softmax((logits + offsets) / (T * t)), T = model.json `temperature`, t = the profile's temperature."""
    parameters = profile["parameters"]
    return calibrated_probabilities(logits, parameters["offsets"], card["temperature"], parameters["temperature"])


def profile_summary(profile: dict) -> dict:
    """What every calibrated result carries: the site, how many films, when, and that sentence."""
    date = profile["created"][:10]
    return {"site": profile["site"], "films": profile["films"], "created": profile["created"],
            "summary": f"calibrated for {profile['site']} (site profile of {profile['films']} films, {date})"}
