// @ts-check
// Saving something the page made (the CSV, the report PNG): a Blob behind an object URL on a `download` link. It
// is a download, not a fetch, so it works offline and nothing leaves the device.

export function downloadBlob(blob, fileName) {
  const url = URL.createObjectURL(blob);
  const link = Object.assign(document.createElement("a"), { href: url, download: fileName });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/** A file-name-safe timestamp of now: 2025-01-31-14-05-09. */
export const stamp = () => new Date().toISOString().slice(0, 19).replace(/[:T]/g, "-");
