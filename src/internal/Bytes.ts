/**
 * Byte helpers shared by the client and the simulator (not exported from the
 * package).
 *
 * @since 0.1.0
 */

/** The chunks as one array: the chunk itself when there is only one (treat the result as read-only). */
export const concat = (chunks: ReadonlyArray<Uint8Array>): Uint8Array => {
  if (chunks.length === 1 && chunks[0] !== undefined) return chunks[0]
  let size = 0
  for (const c of chunks) size += c.byteLength
  const out = new Uint8Array(size)
  let offset = 0
  for (const c of chunks) {
    out.set(c, offset)
    offset += c.byteLength
  }
  return out
}

/** An `ArrayBuffer` holding exactly the bytes of a view (copied only when the view is part of a larger buffer). */
export const toArrayBuffer = (bytes: Uint8Array): ArrayBuffer =>
  bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength && bytes.buffer instanceof ArrayBuffer
    ? bytes.buffer
    : bytes.slice().buffer
