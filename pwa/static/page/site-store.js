// @ts-check
// Where the site profile in use is kept: this browser's localStorage, for this site's origin only. It is never
// sent anywhere (the page talks to no server but its own, and only to fetch its own files). The text is kept as
// it was checked, and checked again (site-profile.js `checkProfile`) every time the app starts or the model file
// changes: what is stored is never applied unchecked.

const KEY = "cxr-triage/site-profile";

/** The stored profile's text, or null (none, or storage unavailable: a private window may refuse it). */
export function storedProfile() {
  try {
    return localStorage.getItem(KEY);
  } catch {
    return null;
  }
}

/** Keep `text` as the profile in use. Throws when the browser refuses to store it. */
export function storeProfile(text) {
  try {
    localStorage.setItem(KEY, text);
  } catch (e) {
    throw new Error(`this browser would not store the site profile (${e.message})`);
  }
}

export function forgetProfile() {
  try {
    localStorage.removeItem(KEY);
  } catch {
    // nothing stored, nothing to forget
  }
}
