// @ts-check
// Service worker registration, and what the page does when it changes:
// - first visit from a host without COOP/COEP headers: once the service worker controls the page (and adds them),
//   reload once to become cross-origin isolated (guarded in sessionStorage: never a reload loop);
// - a new build: its service worker installs, activates (deleting the old cache) and takes over; the page then
//   reloads into the new version (at once when idle, else when the user says) and says "Updated to version X".

const ISOLATION_RELOAD = "cxr-triage:isolation-reload";
const UPDATED = "cxr-triage:updated";

export function registerServiceWorker({ isBusy, onUpdateReady, onOfflineReady, onError }) {
  if (!("serviceWorker" in navigator)) {
    onError?.(new Error("this browser has no service workers: the app will not work offline"));
    return;
  }
  const hadController = Boolean(navigator.serviceWorker.controller);
  let reloading = false;
  const reload = () => {
    if (reloading) return;
    reloading = true;
    location.reload();
  };
  navigator.serviceWorker.addEventListener("controllerchange", () => {
    if (hadController) {
      sessionStorage.setItem(UPDATED, "1");
      if (isBusy()) onUpdateReady(reload);
      else reload();
    } else if (!self.crossOriginIsolated && !sessionStorage.getItem(ISOLATION_RELOAD) && !isBusy()) {
      // (during a batch: no reload; the next visit is isolated anyway)
      sessionStorage.setItem(ISOLATION_RELOAD, "1");
      reload();
    }
  });
  navigator.serviceWorker.register("sw.js", { scope: "./", updateViaCache: "none" })
    .then(() => navigator.serviceWorker.ready)
    .then(() => {
      if (navigator.serviceWorker.controller) onOfflineReady();
      else navigator.serviceWorker.addEventListener("controllerchange", () => onOfflineReady(), { once: true });
    })
    .catch((e) => onError?.(e));
}

/** True once, on the first load after an update was applied. */
export function takeUpdatedFlag() {
  const updated = sessionStorage.getItem(UPDATED) === "1";
  sessionStorage.removeItem(UPDATED);
  if (self.crossOriginIsolated) sessionStorage.removeItem(ISOLATION_RELOAD);
  return updated;
}
