// @ts-check
// The main thread's handle on the inference worker: request() returns a promise for the worker's reply.

export class InferenceClient {
  constructor(url, onFailure) {
    this.worker = new Worker(url, { type: "module", name: "inference" });
    this.pending = new Map();
    this.nextId = 1;
    this.worker.onmessage = ({ data }) => {
      const entry = this.pending.get(data.id);
      if (!entry) return;
      this.pending.delete(data.id);
      if (data.ok) entry.resolve(data.result);
      else entry.reject(new Error(data.error));
    };
    this.worker.onerror = (event) => {
      event.preventDefault();
      const error = new Error(`the inference worker failed: ${event.message || "it could not start"}`);
      for (const entry of this.pending.values()) entry.reject(error);
      this.pending.clear();
      onFailure?.(error);
    };
  }

  request(type, payload = {}, { urgent = false } = {}) {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ id, type, urgent, ...payload });
    });
  }

  /** Drop the classifications still queued in the worker (they resolve with {cancelled: true}). */
  cancel() {
    this.worker.postMessage({ type: "cancel" });
  }
}
