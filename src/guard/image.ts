/**
 * Image input for the Vision model: from a file path, raw bytes or base64 (plain or a data URL).
 * The type is read from the magic bytes, never from a file name or a declared MIME type, and only
 * PNG, JPEG and WebP pass (what the Llama 3.2 vision processors decode). Size is capped before the
 * bytes are read or decoded, so an oversized input costs nothing.
 */
import { open, stat } from 'node:fs/promises';
import { GuardError, type GuardImage, type ImageMime, type ImageSource } from './types.ts';

/** 10 MiB: far above what the model sees (it resizes to 560-px tiles), far below memory trouble. */
export const DEFAULT_MAX_IMAGE_BYTES = 10 * 1024 * 1024;

const SIGNATURES: readonly { mime: ImageMime; test: (b: Uint8Array) => boolean }[] = [
  {
    mime: 'image/png',
    test: (b) => startsWith(b, [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
  },
  { mime: 'image/jpeg', test: (b) => startsWith(b, [0xff, 0xd8, 0xff]) },
  {
    mime: 'image/webp',
    // RIFF <u32 size> WEBP
    test: (b) =>
      startsWith(b, [0x52, 0x49, 0x46, 0x46]) && startsWith(b.subarray(8), [0x57, 0x45, 0x42, 0x50]),
  },
];

/** Formats we recognise only to name them in the error message. */
const OTHER_FORMATS: readonly { name: string; magic: readonly number[] }[] = [
  { name: 'GIF', magic: [0x47, 0x49, 0x46, 0x38] },
  { name: 'BMP', magic: [0x42, 0x4d] },
  { name: 'PDF', magic: [0x25, 0x50, 0x44, 0x46] },
  { name: 'TIFF', magic: [0x49, 0x49, 0x2a, 0x00] },
  { name: 'TIFF', magic: [0x4d, 0x4d, 0x00, 0x2a] },
];

function startsWith(b: Uint8Array, magic: readonly number[]): boolean {
  if (b.length < magic.length) return false;
  for (let i = 0; i < magic.length; i++) if (b[i] !== magic[i]) return false;
  return true;
}

/** The image type from its first bytes, or IMAGE_TYPE. */
export function sniffImageType(bytes: Uint8Array): ImageMime {
  if (bytes.length === 0) throw new GuardError('IMAGE_TYPE', 'the image is empty (0 bytes)');
  for (const s of SIGNATURES) if (s.test(bytes)) return s.mime;
  const other = OTHER_FORMATS.find((f) => startsWith(bytes, f.magic));
  throw new GuardError(
    'IMAGE_TYPE',
    other
      ? `${other.name} images are not supported; use PNG, JPEG or WebP`
      : 'not a PNG, JPEG or WebP image (unrecognised leading bytes)',
  );
}

export interface ImageLimits {
  readonly maxBytes?: number;
}

function checkSize(n: number, maxBytes: number, what: string): void {
  if (n > maxBytes) {
    throw new GuardError('IMAGE_TOO_LARGE', `${what} is ${n} bytes; the limit is ${maxBytes} bytes`);
  }
}

function fromBytes(bytes: Uint8Array, maxBytes: number): GuardImage {
  checkSize(bytes.length, maxBytes, 'the image');
  return { mime: sniffImageType(bytes), bytes };
}

const BASE64_RE = /^[A-Za-z0-9+/_-]*={0,2}$/;

/** Decodes plain base64 (standard or URL-safe alphabet, whitespace ignored) or a base64 data URL. */
function fromBase64(input: string, maxBytes: number): GuardImage {
  let payload = input.trim();
  let declared: string | undefined;
  if (payload.startsWith('data:')) {
    const m = /^data:([^;,]*)((?:;[^;,]*)*),/.exec(payload);
    if (!m) throw new GuardError('IMAGE_READ', 'malformed data URL (expected data:image/...;base64,...)');
    if (!(m[2] ?? '').split(';').includes('base64')) {
      throw new GuardError('IMAGE_READ', 'data URL must be base64-encoded (;base64,)');
    }
    declared = m[1];
    payload = payload.slice(m[0].length);
  }
  payload = payload.replace(/\s+/g, '');
  // Bound the work before decoding: 4 base64 characters carry 3 bytes.
  checkSize(
    Math.floor((payload.length * 3) / 4) - (payload.endsWith('==') ? 2 : payload.endsWith('=') ? 1 : 0),
    maxBytes,
    'the decoded image',
  );
  if (payload.length === 0 || !BASE64_RE.test(payload) || payload.length % 4 === 1) {
    throw new GuardError('IMAGE_READ', 'the image is not valid base64');
  }
  const img = fromBytes(
    new Uint8Array(
      // Node's base64 decoder accepts the URL-safe alphabet too.
      Buffer.from(payload, 'base64'),
    ),
    maxBytes,
  );
  if (declared !== undefined && declared !== '' && declared.toLowerCase() !== img.mime) {
    throw new GuardError('IMAGE_TYPE', `the data URL says ${declared} but the bytes are ${img.mime}`);
  }
  return img;
}

async function fromPath(path: string, maxBytes: number): Promise<GuardImage> {
  let size: number;
  try {
    const s = await stat(path);
    if (!s.isFile()) throw new GuardError('IMAGE_READ', `${path} is not a regular file`);
    size = s.size;
  } catch (e) {
    if (e instanceof GuardError) throw e;
    throw new GuardError('IMAGE_READ', `cannot read image ${path}: ${(e as Error).message}`, { cause: e });
  }
  checkSize(size, maxBytes, `image ${path}`);
  // Read at most maxBytes + 1 so a file that grew after stat() is still caught without reading it all.
  const fh = await open(path, 'r');
  try {
    const buf = new Uint8Array(Math.min(size, maxBytes) + 1);
    let n = 0;
    for (;;) {
      const { bytesRead } = await fh.read(buf, n, buf.length - n, n);
      if (bytesRead === 0) break;
      n += bytesRead;
      if (n === buf.length) break;
    }
    checkSize(n, maxBytes, `image ${path}`);
    return fromBytes(buf.subarray(0, n), maxBytes);
  } finally {
    await fh.close();
  }
}

function isGuardImage(s: ImageSource): s is GuardImage {
  return typeof s === 'object' && 'mime' in s && 'bytes' in s;
}

/** Validates any image source into a GuardImage (type by magic bytes, size within the limit). */
export async function loadImage(source: ImageSource, limits: ImageLimits = {}): Promise<GuardImage> {
  const maxBytes = limits.maxBytes ?? DEFAULT_MAX_IMAGE_BYTES;
  if (!Number.isSafeInteger(maxBytes) || maxBytes <= 0) {
    throw new GuardError('INVALID_OPTION', `maxImageBytes must be a positive integer, got ${maxBytes}`);
  }
  if (source instanceof Uint8Array) return fromBytes(source, maxBytes);
  if (typeof source !== 'object' || source === null) {
    throw new GuardError('IMAGE_READ', 'an image must be bytes, { path }, { bytes } or { base64 }');
  }
  if (isGuardImage(source)) return fromBytes(source.bytes, maxBytes);
  if ('bytes' in source && source.bytes instanceof Uint8Array) return fromBytes(source.bytes, maxBytes);
  if ('base64' in source && typeof source.base64 === 'string') return fromBase64(source.base64, maxBytes);
  if ('path' in source && typeof source.path === 'string') return fromPath(source.path, maxBytes);
  throw new GuardError('IMAGE_READ', 'an image must be bytes, { path }, { bytes } or { base64 }');
}

/** `data:image/png;base64,...` for HTTP backends (OpenAI image_url parts). */
export function imageToDataUrl(img: GuardImage): string {
  return `data:${img.mime};base64,${imageToBase64(img)}`;
}

export function imageToBase64(img: GuardImage): string {
  return Buffer.from(img.bytes.buffer, img.bytes.byteOffset, img.bytes.byteLength).toString('base64');
}
