// @ts-check
// The site profile, the file (docs/site.md): fitted in the app as `cxr validate` fits it (runtime/site_profile.py
// `fit_profile`), signed with the same checksum (the sha256 of its canonical JSON: JSON.stringify with every
// object's keys sorted, which is RFC 8785's form for what a profile holds), and checked on import exactly as
// `load_profile` checks a file: valid JSON, a site profile of this format, the schema (runtime/site-profile.schema.json,
// shipped in contract.js), untouched (the checksum), fitted for this model file (name, version, and the ONNX file's
// sha256 from model.json `files`), and its classes. A refused profile is never applied.
import { SITE_CALIBRATION, SITE_PROFILE_SCHEMA } from "../shared/contract.js";
import { calibratedProbabilities } from "../shared/calibration.js";
import { crossValidate, figures, fit } from "./site-calibration.js";
import { band } from "./uncertainty.js";

const C = SITE_CALIBRATION;
export const CHECKSUM = "content_sha256";

/** A refusal: the reason, said to the user as it is. */
export class ProfileError extends Error {}

// --- the checksum ----------------------------------------------------------------------------------------------

/** `value` with NaN and infinities as null, as core/jsonio.py `plain` makes it before a profile is signed. */
export function plain(value) {
  if (Array.isArray(value)) return value.map(plain);
  if (value && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, plain(v)]));
  }
  return typeof value === "number" && !Number.isFinite(value) ? null : value;
}

function sortKeys(value) {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value && typeof value === "object") {
    return Object.fromEntries(Object.keys(value).sort().map((k) => [k, sortKeys(value[k])]));
  }
  return value;
}

/** runtime/site_profile.py `canonical_json`: JSON.stringify with every object's keys sorted. */
export const canonicalJson = (value) => JSON.stringify(sortKeys(value));

async function sha256Hex(text) {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** The sha256 of the canonical JSON of every field but the checksum itself. */
export function contentSha256(profile) {
  const body = Object.fromEntries(Object.entries(profile).filter(([k]) => k !== CHECKSUM));
  return sha256Hex(canonicalJson(body));
}

/** The profile with its checksum (NaN, which JSON cannot hold, becomes null first). */
export async function sign(profile) {
  const body = plain(Object.fromEntries(Object.entries(profile).filter(([k]) => k !== CHECKSUM)));
  return { ...body, [CHECKSUM]: await contentSha256(body) };
}

/** The profile as `cxr validate` writes it: indented JSON and a final newline. */
export const profileText = (profile) => JSON.stringify(profile, null, 2) + "\n";

// --- fitting ---------------------------------------------------------------------------------------------------

/** runtime/site_profile.py `check_site_labels`: refuse what no profile can be fitted from, saying what is needed. */
export function checkSiteLabels(labels, classes) {
  const unknown = [...new Set(labels)].filter((l) => !classes.includes(l)).sort();
  if (unknown.length) {
    throw new ProfileError(`labels ${unknown.map((l) => `'${l}'`).join(", ")} are not classes of this model ` +
      `(${classes.join(", ")})`);
  }
  if (labels.length < C.min_films) {
    throw new ProfileError(`${labels.length} labelled film(s): a site profile needs at least ${C.min_films} ` +
      `readable labelled films, of at least ${C.min_classes} classes`);
  }
  const shown = classes.filter((c) => labels.includes(c));
  if (shown.length < C.min_classes) {
    throw new ProfileError(`every film is labelled ${shown[0]}: a site profile needs films of at least ` +
      `${C.min_classes} classes (of ${classes.join(", ")})`);
  }
}

/** The UTC time as a profile writes it: 2026-12-08T10:00:00Z. */
export const utcNow = () => new Date().toISOString().slice(0, 19) + "Z";

/**
 * The site profile of these films, signed: runtime/site_profile.py `fit_profile`, field for field.
 * @param {number[][]} logits one row per film (the graph's `logits` output)
 * @param {string[]} labels class names of `card`
 * @param {string[]} patients one id per film
 * @param {any} card model.json
 * @param {string} site the site's name
 * @param {{modelSha256: string, withheld?: boolean[], unlikeTraining?: boolean[], nBoot?: number, seed?: number,
 *   created?: string}} options
 */
export async function fitProfile(logits, labels, patients, card, site, options) {
  const { modelSha256, nBoot = C.n_boot, seed = C.seed } = options;
  const classes = card.classes;
  checkSiteLabels(labels, classes);
  if (!String(site).trim()) throw new ProfileError("a site profile needs a site name");
  if (logits.length !== labels.length || logits.some((row) => row.length !== classes.length
    || !row.every(Number.isFinite))) {
    throw new ProfileError(`logits must be finite, one row of ${classes.length} per film`);
  }
  const y = labels.map((l) => classes.indexOf(l));
  patients = patients.map(String);
  if (new Set(patients).size < 2) {
    throw new ProfileError("every film is of one patient: a site profile needs films of at least 2 patients (its " +
      "figures are cross-validated by patient)");
  }
  const withheld = options.withheld ?? y.map(() => false);
  const unlike = options.unlikeTraining ?? y.map(() => false);
  const calibration = fit(logits, y, withheld.map((w, i) => w || unlike[i]), card);
  const checked = crossValidate(logits, y, patients, withheld, card, seed, unlike);
  const before = logits.map((z) => calibratedProbabilities(z, classes.map(() => 0), card.temperature));
  const beforeBands = before.map((p, i) => band(p, withheld[i], card.uncertainty ?? null, unlike[i]));
  return sign({
    format: C.profile_format, kind: C.profile_kind,
    model: { name: card.name, version: card.version, sha256: modelSha256 },
    site: String(site).trim(),
    created: options.created ?? utcNow(),
    classes: [...classes],
    films: y.length,
    patients: new Set(patients).size,
    films_per_class: Object.fromEntries(classes.map((c, k) => [c, y.filter((v) => v === k).length])),
    parameters: {
      offsets: calibration.offsets, temperature: calibration.temperature, model_temperature: card.temperature,
      fitted: { classes: calibration.fittedClasses.map((k) => classes[k]), temperature: calibration.fittedTemperature },
    },
    band: calibration.band,
    prior: { offset: C.offset_prior, temperature: C.temperature_prior, min_films_temperature: C.min_films_temperature,
      min_films_band: C.min_films_band },
    cross_validated: {
      method: checked.method, folds: checked.folds,
      note: "each film scored by a calibration fitted on the other patients' films only",
      before: figures(y, before, beforeBands, patients, classes, nBoot, seed),
      after: figures(y, checked.probabilities, checked.bands, patients, classes, nBoot, seed),
    },
  });
}

// --- checking a file -------------------------------------------------------------------------------------------

const typeOf = (v) => (v === null ? "null" : Array.isArray(v) ? "array" : typeof v);
const show = (v) => JSON.stringify(v);

function hasType(value, type) {
  if (type === "integer") return Number.isInteger(value);
  if (type === "number") return typeof value === "number";
  return typeOf(value) === type;
}

/** A pattern as Python's re.search reads it: `$` also matches before a final newline. */
const pattern = (text) => new RegExp(text.replace(/\$$/, "(?:\\n)?$"), "u");

/** The errors of `value` against the subset of JSON Schema (2020-12) the profile's schema uses, each
 * {path: [...], message} in jsonschema's words. */
function schemaErrors(value, schema, path = [], root = schema) {
  if (schema.$ref) {
    const target = schema.$ref.replace(/^#\//, "").split("/").reduce((node, key) => node[key], root);
    return schemaErrors(value, target, path, root);
  }
  const errors = [];
  const fail = (message) => errors.push({ path, message });
  if (schema.type !== undefined) {
    const types = [schema.type].flat();
    if (!types.some((t) => hasType(value, t))) {
      fail(`${show(value)} is not of type ${types.map((t) => `'${t}'`).join(", ")}`);
      return errors;
    }
  }
  if ("const" in schema && canonicalJson(value) !== canonicalJson(schema.const)) fail(`${show(schema.const)} was expected`);
  if (schema.enum && !schema.enum.some((e) => canonicalJson(e) === canonicalJson(value))) {
    fail(`${show(value)} is not one of ${show(schema.enum)}`);
  }
  if (typeof value === "number") {
    if (schema.minimum !== undefined && value < schema.minimum) {
      fail(`${show(value)} is less than the minimum of ${schema.minimum}`);
    }
    if (schema.maximum !== undefined && value > schema.maximum) {
      fail(`${show(value)} is greater than the maximum of ${schema.maximum}`);
    }
    if (schema.exclusiveMinimum !== undefined && value <= schema.exclusiveMinimum) {
      fail(`${show(value)} is less than or equal to the minimum of ${schema.exclusiveMinimum}`);
    }
  }
  if (typeof value === "string") {
    const length = [...value].length;
    if (schema.minLength !== undefined && length < schema.minLength) fail(`${show(value)} is too short`);
    if (schema.maxLength !== undefined && length > schema.maxLength) fail(`${show(value)} is too long`);
    if (schema.pattern !== undefined && !pattern(schema.pattern).test(value)) {
      fail(`${show(value)} does not match ${show(schema.pattern)}`);
    }
  }
  if (Array.isArray(value)) {
    if (schema.minItems !== undefined && value.length < schema.minItems) fail(`${show(value)} is too short`);
    if (schema.maxItems !== undefined && value.length > schema.maxItems) fail(`${show(value)} is too long`);
    if (schema.uniqueItems && new Set(value.map(canonicalJson)).size !== value.length) {
      fail(`${show(value)} has non-unique elements`);
    }
    if (schema.items) value.forEach((item, i) => errors.push(...schemaErrors(item, schema.items, [...path, i], root)));
  }
  if (typeOf(value) === "object") {
    for (const key of schema.required ?? []) {
      if (!Object.hasOwn(value, key)) fail(`'${key}' is a required property`);
    }
    const properties = schema.properties ?? {};
    const extra = [];
    for (const [key, item] of Object.entries(value)) {
      if (Object.hasOwn(properties, key)) errors.push(...schemaErrors(item, properties[key], [...path, key], root));
      else if (schema.additionalProperties === false) extra.push(key);
      else if (schema.additionalProperties) {
        errors.push(...schemaErrors(item, schema.additionalProperties, [...path, key], root));
      }
    }
    if (extra.length) {
      fail(`Additional properties are not allowed (${extra.map((k) => `'${k}'`).join(", ")} ` +
        `${extra.length === 1 ? "was" : "were"} unexpected)`);
    }
  }
  if (schema.oneOf) {
    const passing = schema.oneOf.filter((option) => !schemaErrors(value, option, path, root).length).length;
    if (passing !== 1) {
      fail(passing ? `${show(value)} is valid under each of the given schemas`
        : `${show(value)} is not valid under any of the given schemas`);
    }
  }
  return errors;
}

/** Paths compared element by element, as Python sorts jsonschema's errors by their path. */
function comparePaths(a, b) {
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    if (a[i] !== b[i]) return String(a[i]) < String(b[i]) ? -1 : 1;
  }
  return a.length - b.length;
}

/**
 * runtime/site_profile.py `load_profile`: the profile in `text` (the file `name`), checked for this model file.
 * Resolves to the profile; rejects with a ProfileError naming the file and the reason.
 * @param {string} text the file's content
 * @param {string} name the file's name, for the messages
 * @param {any} card model.json
 * @param {string} modelFile the ONNX file the app uses (its sha256 is model.json `files[modelFile].sha256`)
 */
export async function checkProfile(text, name, card, modelFile) {
  const refuse = (reason) => { throw new ProfileError(`${name}: ${reason}`); };
  let profile;
  try {
    profile = JSON.parse(text);
  } catch (e) {
    refuse(`not a site profile: not valid JSON (${e.message})`);
  }
  if (typeOf(profile) !== "object" || profile.kind !== C.profile_kind) {
    refuse(`not a site profile (no "kind": "${C.profile_kind}"; \`cxr validate\` writes one)`);
  }
  if (profile.format !== C.profile_format) {
    refuse(`site profile format ${show(profile.format ?? null)}, this version reads format ${C.profile_format}`);
  }
  const errors = schemaErrors(profile, SITE_PROFILE_SCHEMA).sort((a, b) => comparePaths(a.path, b.path));
  if (errors.length) {
    refuse(`malformed site profile: ${errors[0].message} (at ${errors[0].path.join("/") || "the top level"})`);
  }
  if (profile[CHECKSUM] !== (await contentSha256(profile))) {
    refuse(`the site profile was changed after it was written (its ${CHECKSUM} does not match its content): fit ` +
      "it again with `cxr validate` rather than editing it");
  }
  const fitted = profile.model;
  const here = { name: card.name, version: card.version, sha256: card.files?.[modelFile]?.sha256 ?? "" };
  const differ = ["name", "version", "sha256"].filter((k) => fitted[k] !== here[k]);
  if (differ.length) {
    refuse(`the site profile was fitted for another model (${fitted.name} ${fitted.version}, sha256 ` +
      `${fitted.sha256.slice(0, 12)}...), not this one (${here.name} ${here.version}, sha256 ` +
      `${here.sha256.slice(0, 12)}...; ${differ.join(", ")} differ): validate this model at the site to get its ` +
      "own profile");
  }
  const classes = card.classes;
  const perClass = Object.keys(profile.films_per_class);
  if (canonicalJson(profile.classes) !== canonicalJson(classes) || profile.parameters.offsets.length !== classes.length
    || perClass.length !== classes.length || !perClass.every((c) => classes.includes(c))) {
    refuse(`malformed site profile: its classes, offsets or films per class do not match the model's ` +
      `${classes.length} classes (${classes.join(", ")})`);
  }
  return profile;
}

/** What every calibrated result carries (runtime/site_profile.py `profile_summary`). */
export function profileSummary(profile) {
  const date = profile.created.slice(0, 10);
  return { site: profile.site, films: profile.films, created: profile.created,
    summary: `calibrated for ${profile.site} (site profile of ${profile.films} films, ${date})` };
}
