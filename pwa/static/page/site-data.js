// @ts-check
// A site's labelled films, as the "Validate at your site" view takes them: the browser's copy of
// runtime/site_data.py. Two forms, as `cxr validate --data` takes them:
// - a folder per class (an <input webkitdirectory> per class of model.json): every file under it is a film of that
//   class, hidden files and folders left out; each film counts as its own patient, named by its path from the
//   chosen folder ("COVID-19/a.png", as `cxr validate` names it when the folder is named for its class);
// - files and a CSV with the columns file and label, optionally patient_id (other columns ignored). A CSV row names
//   its file by a path; the browser only knows the chosen files' names (and, for a chosen folder, their paths in
//   it), so a row is matched by its path's end, and a row whose file was not chosen is skipped and listed, as
//   `cxr validate` lists a file it cannot read.
// Anything that is not a labelled film of a class of the model is refused with the file, the line and the reason.

/** A refusal of the whole set: the reason, said to the user as it is. */
export class SiteDataError extends Error {}

/** The class `name` stands for, whatever its case and surrounding blanks; undefined for none. */
export function classOf(name, classes) {
  const wanted = String(name).trim().toLowerCase();
  return classes.find((c) => c.toLowerCase() === wanted);
}

/** Paths compared part by part, as Python sorts pathlib paths. */
function comparePaths(a, b) {
  const x = a.split("/"), y = b.split("/");
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    if (x[i] !== y[i]) return x[i] < y[i] ? -1 : 1;
  }
  return x.length - y.length;
}

/** A chosen file's path: in its chosen folder ("Normal/sub/a.png"), or its name. */
const pathOf = (file) => file.webkitRelativePath || file.name;

/**
 * The films of a folder per class: `folders[k]` holds the files chosen for class k (an empty list: none).
 * @param {File[][]} folders
 * @param {string[]} classes
 * @returns {{file: File, name: string, label: string, patient_id: string}[]}
 */
export function filmsFromFolders(folders, classes) {
  if (!folders.some((files) => files.length)) {
    throw new SiteDataError("no labelled films: choose a folder of films for at least two of the classes " +
      `(${classes.join(", ")})`);
  }
  const films = [];
  classes.forEach((label, k) => {
    const files = (folders[k] ?? []).filter((file) => !pathOf(file).split("/").slice(1).some((part) =>
      part.startsWith(".")) && !file.name.startsWith("."));
    for (const file of files.sort((a, b) => comparePaths(pathOf(a), pathOf(b)))) {
      const path = pathOf(file);
      // `cxr validate` names a film by its path from the data folder, whose subfolder is named for the class.
      const named = file.webkitRelativePath && classOf(path.split("/")[0], classes) === label;
      films.push({ file, name: path, label, patient_id: named ? path : `${label}/${path}` });
    }
  });
  return films;
}

/** The records of a CSV text (RFC 4180: quoted fields, doubled quotes, CRLF or LF), blank lines left out as
 * Python's csv module leaves them out. */
export function parseCsv(text) {
  const records = [];
  let record = [], field = "", quoted = false, i = 0, touched = false;
  const endField = () => { record.push(field); field = ""; };
  const endRecord = () => {
    endField();
    if (touched) records.push(record);
    record = [];
    touched = false;
  };
  while (i < text.length) {
    const ch = text[i];
    if (quoted) {
      if (ch === '"' && text[i + 1] === '"') { field += '"'; i += 2; continue; }
      if (ch === '"') { quoted = false; i += 1; continue; }
      field += ch;
      i += 1;
      continue;
    }
    if (ch === '"') { quoted = true; touched = true; i += 1; continue; }
    if (ch === ",") { endField(); touched = true; i += 1; continue; }
    if (ch === "\r" || ch === "\n") {
      endRecord();
      i += ch === "\r" && text[i + 1] === "\n" ? 2 : 1;
      continue;
    }
    field += ch;
    touched = true;
    i += 1;
  }
  if (touched || field) endRecord();
  return records;
}

/**
 * The films a CSV labels among the chosen files: runtime/site_data.py `read_csv`, its checks and its messages.
 * @param {string} text the CSV's content
 * @param {string} csvName its file name, for the messages
 * @param {File[]} files the chosen films
 * @param {string[]} classes
 * @returns {{films: {file: File, name: string, label: string, patient_id: string}[],
 *   missing: {file: string, label: string, reason: string}[]}} missing: rows whose file was not chosen
 */
export function filmsFromCsv(text, csvName, files, classes) {
  const [header = [], ...rows] = parseCsv(text.replace(/^\uFEFF/, "")); // a spreadsheet's byte order mark
  const columns = header.map((c) => c.trim());
  const absent = ["file", "label"].filter((c) => !columns.includes(c));
  if (absent.length) {
    throw new SiteDataError(`${csvName}: no ${absent.join(" or ")} column (a labelled CSV has file,label and ` +
      `optionally patient_id; it has ${columns.join(", ") || "no header"})`);
  }
  const byName = new Map();
  for (const file of files) {
    if (!byName.has(file.name)) byName.set(file.name, []);
    byName.get(file.name).push(file);
  }
  const films = [], missing = [], problems = [];
  rows.forEach((values, index) => {
    const line = index + 2; // line 1 is the header
    const row = Object.fromEntries(columns.map((c, j) => [c, (values[j] ?? "").trim()]));
    const label = classOf(row.label, classes);
    if (!row.file) {
      problems.push(`line ${line}: no file`);
      return;
    }
    if (label === undefined) {
      problems.push(row.label ? `line ${line}: label '${row.label}' is not a class of this model`
        : `line ${line}: no label`);
      return;
    }
    const path = row.file.replace(/\\/g, "/");
    const candidates = byName.get(path.split("/").pop()) ?? [];
    // Several chosen files of that name: the one whose path in its chosen folder ends the CSV's path.
    const matches = candidates.length > 1
      ? candidates.filter((f) => f.webkitRelativePath && `/${path}`.endsWith(`/${f.webkitRelativePath}`))
      : candidates;
    const patient = row.patient_id || row.file;
    if (matches.length === 1) films.push({ file: matches[0], name: row.file, label, patient_id: patient });
    else if (!matches.length && !candidates.length) {
      missing.push({ file: row.file, label, reason: "not among the chosen files: choose it with the others" });
    } else {
      problems.push(`line ${line}: ${row.file} matches ${candidates.length} chosen files of that name (choose ` +
        "their folder, so that the CSV's paths tell them apart)");
    }
  });
  if (problems.length) {
    const shown = problems.slice(0, 5).join("; ") + (problems.length > 5 ? `; and ${problems.length - 5} more` : "");
    throw new SiteDataError(`${csvName}: ${shown} (classes: ${classes.join(", ")})`);
  }
  if (!films.length && !missing.length) throw new SiteDataError(`${csvName}: no labelled films in it`);
  return { films, missing };
}
