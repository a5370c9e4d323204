/**
 * Audio that real decoders accept, of a length proportional to the text.
 *
 * **Details**
 *
 * - `mp3_*`: valid MPEG Layer III frames of digital silence (MPEG-1 at 32/44.1/48 kHz,
 *   MPEG-2 LSF at 16/22.05/24 kHz), mono, no CRC; side info and main data are zero, so every
 *   granule decodes to silence. Each frame starts with the frame sync `0xFFE`.
 * - `pcm_*`: raw little-endian signed 16-bit mono, no header (what the API sends).
 * - `wav_*`: a 44-byte RIFF/WAVE header followed by the same PCM.
 * - `ulaw_8000` / `alaw_8000`: 8-bit G.711 silence (`0xFF` / `0xD5`), no header.
 * - `opus_*`: an Ogg Opus file (OpusHead, OpusTags, then 20 ms packets carrying only a TOC
 *   byte with a zero-length frame, which decoders render as silence).
 *
 * The generator is pure: no time, no randomness.
 *
 * @since 0.1.0
 */
import { concat } from "../internal/Bytes.ts"

/** A decoded output format name. */
export interface FormatInfo {
  readonly codec: "mp3" | "pcm" | "wav" | "ulaw" | "alaw" | "opus"
  readonly sampleRate: number
  /** kbps, for mp3 and opus. */
  readonly bitrate: number
}

/** Parses `codec_samplerate[_bitrate]`; `undefined` when the name is not of that form. */
export const parseFormat = (format: string): FormatInfo | undefined => {
  const m = /^(mp3|pcm|wav|ulaw|alaw|opus)_(\d+)(?:_(\d+))?$/.exec(format)
  if (m === null) return undefined
  const codec = m[1] as FormatInfo["codec"]
  const sampleRate = Number(m[2])
  const bitrate = m[3] === undefined ? (codec === "mp3" ? 128 : codec === "opus" ? 64 : 0) : Number(m[3])
  return { codec, sampleRate, bitrate }
}

/** The Content-Type the simulator sends for a format (`docs/api-facts.md` §2.7). */
export const contentTypeOf = (format: string): string => {
  const info = parseFormat(format)
  switch (info?.codec) {
    case "pcm":
      return "audio/pcm"
    case "wav":
      return "audio/wav"
    case "ulaw":
    case "alaw":
      return "audio/basic"
    case "opus":
      return "audio/ogg"
    default:
      return "audio/mpeg"
  }
}

const mpeg1Bitrates = [0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320]
const mpeg2Bitrates = [0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160]
const mpeg1Rates = [44100, 48000, 32000]
const mpeg2Rates = [22050, 24000, 16000]

/** One silent MPEG Layer III frame, and the samples it holds. */
export const mp3Frame = (
  sampleRate: number,
  kbps: number
): { readonly frame: Uint8Array; readonly samples: number } => {
  const v1 = mpeg1Rates.indexOf(sampleRate)
  const isV1 = v1 >= 0
  const rateIndex = isV1 ? v1 : mpeg2Rates.indexOf(sampleRate)
  const table = isV1 ? mpeg1Bitrates : mpeg2Bitrates
  let bitrateIndex = table.indexOf(kbps)
  if (rateIndex < 0) return mp3Frame(44100, 128)
  if (bitrateIndex <= 0) bitrateIndex = isV1 ? 9 : 8 // 128 kbps / 64 kbps
  const bitrate = table[bitrateIndex]! * 1000
  const size = isV1 ? Math.floor((144 * bitrate) / sampleRate) : Math.floor((72 * bitrate) / sampleRate)
  const frame = new Uint8Array(size)
  frame[0] = 0xff
  // sync (3 bits) | version (11 = MPEG-1, 10 = MPEG-2) | layer III (01) | no CRC (1)
  frame[1] = isV1 ? 0xfb : 0xf3
  frame[2] = (bitrateIndex << 4) | (rateIndex << 2) // no padding, private bit 0
  frame[3] = 0xc4 // mono, no mode extension, original, no emphasis
  return { frame, samples: isV1 ? 1152 : 576 }
}

const mp3 = (info: FormatInfo, seconds: number): Uint8Array => {
  const sampleRate = info.sampleRate
  const { frame, samples } = mp3Frame(sampleRate, info.bitrate)
  const count = Math.max(1, Math.ceil((seconds * sampleRate) / samples))
  const out = new Uint8Array(frame.length * count)
  for (let i = 0; i < count; i++) out.set(frame, i * frame.length)
  return out
}

/** s16le mono: silence with a faint 440 Hz tone, so the audio is not all zeros. */
const pcm = (sampleRate: number, seconds: number): Uint8Array => {
  const samples = Math.max(1, Math.round(seconds * sampleRate))
  const out = new Uint8Array(samples * 2)
  const view = new DataView(out.buffer)
  for (let i = 0; i < samples; i++) {
    view.setInt16(i * 2, Math.round(64 * Math.sin((2 * Math.PI * 440 * i) / sampleRate)), true)
  }
  return out
}

/** A 44-byte RIFF/WAVE header for s16le mono PCM of `dataBytes` bytes. */
export const wavHeader = (sampleRate: number, dataBytes: number): Uint8Array => {
  const out = new Uint8Array(44)
  const view = new DataView(out.buffer)
  const ascii = (offset: number, s: string) => {
    for (let i = 0; i < s.length; i++) out[offset + i] = s.charCodeAt(i)
  }
  ascii(0, "RIFF")
  view.setUint32(4, 36 + dataBytes, true)
  ascii(8, "WAVE")
  ascii(12, "fmt ")
  view.setUint32(16, 16, true)
  view.setUint16(20, 1, true) // PCM
  view.setUint16(22, 1, true) // mono
  view.setUint32(24, sampleRate, true)
  view.setUint32(28, sampleRate * 2, true)
  view.setUint16(32, 2, true)
  view.setUint16(34, 16, true)
  ascii(36, "data")
  view.setUint32(40, dataBytes, true)
  return out
}

// Ogg's CRC-32: polynomial 0x04c11db7, not reflected, initial value 0.
const oggCrcTable = (() => {
  const table = new Uint32Array(256)
  for (let i = 0; i < 256; i++) {
    let r = i << 24
    for (let j = 0; j < 8; j++) r = r & 0x80000000 ? (r << 1) ^ 0x04c11db7 : r << 1
    table[i] = r >>> 0
  }
  return table
})()

const oggPage = (
  packets: ReadonlyArray<Uint8Array>,
  headerType: number,
  granule: number,
  sequence: number
): Uint8Array => {
  const segments: Array<number> = []
  for (const p of packets) {
    let n = p.length
    while (n >= 255) {
      segments.push(255)
      n -= 255
    }
    segments.push(n)
  }
  const header = new Uint8Array(27 + segments.length)
  const view = new DataView(header.buffer)
  header.set([0x4f, 0x67, 0x67, 0x53], 0) // "OggS"
  header[5] = headerType
  view.setUint32(6, granule % 0x100000000, true)
  view.setUint32(10, Math.floor(granule / 0x100000000), true)
  view.setUint32(14, 0x454c4142, true) // stream serial number
  view.setUint32(18, sequence, true)
  header[26] = segments.length
  header.set(segments, 27)
  const page = concat([header, ...packets])
  let crc = 0
  for (let i = 0; i < page.length; i++) crc = ((crc << 8) ^ oggCrcTable[((crc >>> 24) ^ page[i]!) & 0xff]!) >>> 0
  new DataView(page.buffer).setUint32(22, crc, true)
  return page
}

const opus = (seconds: number): Uint8Array => {
  const head = new Uint8Array(19)
  const hv = new DataView(head.buffer)
  head.set(new TextEncoder().encode("OpusHead"), 0)
  head[8] = 1 // version
  head[9] = 1 // channels
  hv.setUint16(10, 312, true) // pre-skip
  hv.setUint32(12, 48000, true)
  const vendor = new TextEncoder().encode("elevenlabs-resilience")
  const tags = new Uint8Array(8 + 4 + vendor.length + 4)
  const tv = new DataView(tags.buffer)
  tags.set(new TextEncoder().encode("OpusTags"), 0)
  tv.setUint32(8, vendor.length, true)
  tags.set(vendor, 12)
  const frames = Math.max(1, Math.ceil(seconds / 0.02))
  const pages: Array<Uint8Array> = [oggPage([head], 0x02, 0, 0), oggPage([tags], 0, 0, 1)]
  const perPage = 50 // one second of 20 ms packets per page
  let sequence = 2
  for (let start = 0; start < frames; start += perPage) {
    const n = Math.min(perPage, frames - start)
    // TOC 0xF8: config 31 (CELT, fullband, 20 ms), mono, one frame; the frame is empty (silence).
    const packets = Array.from({ length: n }, () => new Uint8Array([0xf8]))
    const last = start + n >= frames
    pages.push(oggPage(packets, last ? 0x04 : 0, 312 + (start + n) * 960, sequence++))
  }
  return concat(pages)
}

/** Seconds of speech for a text, at `charsPerSecond` characters per second. */
export const speechSeconds = (characters: number, charsPerSecond: number): number =>
  Math.max(0.1, characters / charsPerSecond)

/**
 * The audio bytes of `seconds` of sound in `format` (unknown names fall back to `mp3_44100_128`).
 * A fresh copy every call; {@link renderShared} is the cached, read-only variant the simulator uses.
 */
export const render = (format: string, seconds: number): Uint8Array => {
  const info = parseFormat(format) ?? { codec: "mp3", sampleRate: 44100, bitrate: 128 }
  switch (info.codec) {
    case "mp3":
      return mp3(info, seconds)
    case "pcm":
      return pcm(info.sampleRate, seconds)
    case "wav": {
      const data = pcm(info.sampleRate, seconds)
      return concat([wavHeader(info.sampleRate, data.length), data])
    }
    case "ulaw":
      return new Uint8Array(Math.max(1, Math.round(seconds * info.sampleRate))).fill(0xff)
    case "alaw":
      return new Uint8Array(Math.max(1, Math.round(seconds * info.sampleRate))).fill(0xd5)
    case "opus":
      return opus(seconds)
  }
}

const mp3Shapes = new Map<string, { readonly bytes: number; readonly samples: number }>()

// Byte count of `seconds` of a codec whose stream is a plain repetition (MP3 silence frames,
// PCM, G.711): the output for fewer seconds is a prefix of the output for more, so one buffer
// per format serves every length.
const prefixLength = (info: FormatInfo, seconds: number): number | undefined => {
  switch (info.codec) {
    case "mp3": {
      // As `mp3` counts: frames of the (possibly fallback) frame, at the asked sample rate.
      const key = `${info.sampleRate}_${info.bitrate}`
      let shape = mp3Shapes.get(key)
      if (shape === undefined) {
        const { frame, samples } = mp3Frame(info.sampleRate, info.bitrate)
        shape = { bytes: frame.length, samples }
        mp3Shapes.set(key, shape)
      }
      return shape.bytes * Math.max(1, Math.ceil((seconds * info.sampleRate) / shape.samples))
    }
    case "pcm":
      return 2 * Math.max(1, Math.round(seconds * info.sampleRate))
    case "ulaw":
    case "alaw":
      return Math.max(1, Math.round(seconds * info.sampleRate))
    default:
      return undefined
  }
}

const sharedByFormat = new Map<string, { readonly seconds: number; readonly bytes: Uint8Array }>()
const sharedExact = new Map<string, Uint8Array>()
/** Longest audio (bytes) served from a shared buffer; a buffer may grow to twice that. */
const sharedMaxBytes = 32 * 1024 * 1024
/** Entries of the exact-length cache (WAV, Opus) before it is cleared. */
const sharedExactMax = 256

/**
 * Like {@link render}, but the bytes are shared between calls and MUST NOT be written to:
 * MP3, PCM and G.711 are served as a prefix of one buffer per format (grown, by doubling, to
 * the longest length asked, up to 32 MB), WAV and Opus from a small cache by exact length
 * (entries up to 512 kB); longer audio is rendered fresh. Same bytes as
 * {@link render}; a simulated request then costs no allocation for its audio, which matters
 * when a run renders hours of speech (a 24-hour, 100,000-request run asks for ~30 GB).
 */
export const renderShared = (format: string, seconds: number): Uint8Array => {
  const info = parseFormat(format) ?? { codec: "mp3", sampleRate: 44100, bitrate: 128 }
  const length = prefixLength(info, seconds)
  if (length === undefined) {
    const key = `${format}|${seconds}`
    const hit = sharedExact.get(key)
    if (hit !== undefined) return hit
    const bytes = render(format, seconds)
    if (bytes.length > sharedMaxBytes / 64) return bytes
    if (sharedExact.size >= sharedExactMax) sharedExact.clear()
    sharedExact.set(key, bytes)
    return bytes
  }
  // Past the cap, a fresh copy: a process-long cache must not pin hundreds of MB for one huge answer.
  if (length > sharedMaxBytes) return render(format, seconds)
  let shared = sharedByFormat.get(format)
  if (shared === undefined || shared.bytes.length < length) {
    // Double (by at most ten minutes of audio), so slowly growing lengths render O(log n) times.
    const before = shared?.seconds ?? 0
    const grown = Math.max(seconds, Math.min(2 * before, before + 600))
    const bytes = render(format, grown)
    // Never grown past twice the cap: the request itself fits under it.
    shared = bytes.length <= 2 * sharedMaxBytes
      ? { seconds: grown, bytes }
      : { seconds, bytes: render(format, seconds) }
    sharedByFormat.set(format, shared)
  }
  return shared.bytes.subarray(0, length)
}

/** How many leading bytes of an upload {@link estimateSeconds} reads. */
export const estimateHeadBytes = 8192

/**
 * A rough duration of uploaded audio, for speech to text: the WAV header when
 * there is one, the first MPEG frame's bitrate for MP3, else 16 kHz s16le.
 * Reads only the first {@link estimateHeadBytes} of `bytes`; `length` is the
 * whole file's size (default: `bytes.length`), so the head of a large upload
 * is enough.
 */
export const estimateSeconds = (bytes: Uint8Array, length: number = bytes.length): number => {
  if (bytes.length >= 44 && bytes[0] === 0x52 && bytes[1] === 0x49 && bytes[2] === 0x46 && bytes[3] === 0x46) {
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
    const byteRate = view.getUint32(28, true)
    return byteRate > 0 ? (length - 44) / byteRate : 0
  }
  const sync = bytes.findIndex((b, i) => b === 0xff && ((bytes[i + 1] ?? 0) & 0xe0) === 0xe0)
  if (sync >= 0 && sync < 4096) {
    const b1 = bytes[sync + 1]!
    const b2 = bytes[sync + 2] ?? 0
    const isV1 = (b1 & 0x18) === 0x18
    const kbps = (isV1 ? mpeg1Bitrates : mpeg2Bitrates)[b2 >> 4] ?? 128
    if (kbps > 0) return (length * 8) / (kbps * 1000)
  }
  return length / 32000
}

/** Splits bytes into `count` nearly equal chunks (at least one byte each). */
export const chunk = (bytes: Uint8Array, count: number): Array<Uint8Array> => {
  const n = Math.max(1, Math.min(count, bytes.length))
  const size = Math.ceil(bytes.length / n)
  const out: Array<Uint8Array> = []
  for (let offset = 0; offset < bytes.length; offset += size) out.push(bytes.subarray(offset, offset + size))
  return out.length === 0 ? [bytes] : out
}
