// @ts-check
// zlib / raw deflate through the browser's own DecompressionStream, with a cap on the output (no zip bombs).

/**
 * Inflate `chunks` (Uint8Arrays, concatenated) with `format` ("deflate" = zlib, "deflate-raw"), keeping at most
 * `limit` bytes: reading stops there, so data past the end of the stream is never looked at.
 */
export async function inflate(chunks, format, limit) {
  const stream = new Blob(chunks).stream().pipeThrough(new DecompressionStream(format));
  const reader = stream.getReader();
  const parts = [];
  let size = 0;
  try {
    while (size < limit) {
      const { done, value } = await reader.read();
      if (done) break;
      const take = Math.min(value.length, limit - size);
      parts.push(take === value.length ? value : value.subarray(0, take));
      size += take;
    }
  } finally {
    reader.cancel().catch(() => {});
  }
  if (parts.length === 1) return parts[0];
  const out = new Uint8Array(size);
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}
