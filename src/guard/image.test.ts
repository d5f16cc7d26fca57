import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { DEFAULT_MAX_IMAGE_BYTES, imageToDataUrl, loadImage, sniffImageType } from './image.ts';
import { TINY_PNG } from './testing/fake-backend.ts';
import { GuardError } from './types.ts';

const code = (c: string) => (e: unknown) => e instanceof GuardError && e.code === c;
// Magic numbers from the format specifications (PNG: RFC 2083 §3.1; JPEG: SOI FF D8 + marker FF;
// WebP: RIFF container with form type "WEBP").
const JPEG = new Uint8Array([0xff, 0xd8, 0xff, 0xe0, 0, 0x10, 0x4a, 0x46, 0x49, 0x46]);
const WEBP = new Uint8Array([...Buffer.from('RIFF'), 26, 0, 0, 0, ...Buffer.from('WEBPVP8 ')]);
const GIF = new Uint8Array(Buffer.from('GIF89a\x01\x00\x01\x00'));

describe('sniffImageType', () => {
  it('recognises PNG, JPEG and WebP by their magic bytes', () => {
    assert.equal(sniffImageType(TINY_PNG), 'image/png');
    assert.equal(sniffImageType(JPEG), 'image/jpeg');
    assert.equal(sniffImageType(WEBP), 'image/webp');
  });

  it('refuses other formats, text, truncated headers and empty input with IMAGE_TYPE', () => {
    assert.throws(
      () => sniffImageType(GIF),
      (e) => code('IMAGE_TYPE')(e) && /GIF/.test((e as Error).message),
    );
    assert.throws(() => sniffImageType(new Uint8Array(Buffer.from('hello, world'))), code('IMAGE_TYPE'));
    assert.throws(() => sniffImageType(TINY_PNG.subarray(0, 4)), code('IMAGE_TYPE'));
    assert.throws(() => sniffImageType(new Uint8Array(Buffer.from('RIFF\0\0\0\0WAVE'))), code('IMAGE_TYPE'));
    assert.throws(() => sniffImageType(new Uint8Array()), code('IMAGE_TYPE'));
  });
});

describe('loadImage', () => {
  it('loads bytes, base64, data URLs and files', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'guard-img-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const path = join(dir, 'x.bin'); // the name says nothing; the bytes decide
    writeFileSync(path, JPEG);
    const b64 = Buffer.from(TINY_PNG).toString('base64');
    assert.equal((await loadImage(TINY_PNG)).mime, 'image/png');
    assert.equal((await loadImage({ bytes: WEBP })).mime, 'image/webp');
    assert.deepEqual((await loadImage({ base64: b64 })).bytes, TINY_PNG);
    assert.deepEqual((await loadImage({ base64: `data:image/png;base64,${b64}` })).bytes, TINY_PNG);
    assert.deepEqual((await loadImage({ base64: b64.replace(/(.{8})/g, '$1\n') })).bytes, TINY_PNG);
    const tailed = new Uint8Array([...TINY_PNG, 0xfb, 0xef, 0xbe, 0xff, 0xff, 0xff]); // encodes to '-' and '_'
    const urlSafe = Buffer.from(tailed).toString('base64url');
    assert.ok(/[-_]/.test(urlSafe), 'the fixture exercises the URL-safe alphabet');
    assert.deepEqual((await loadImage({ base64: urlSafe })).bytes, tailed);
    const f = await loadImage({ path });
    assert.equal(f.mime, 'image/jpeg');
    assert.deepEqual(f.bytes, JPEG);
    assert.equal(imageToDataUrl(await loadImage(TINY_PNG)), `data:image/png;base64,${b64}`);
  });

  it('enforces the size limit on every source, before decoding', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'guard-img-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const big = new Uint8Array(2000);
    big.set(TINY_PNG);
    const path = join(dir, 'big.png');
    writeFileSync(path, big);
    const limits = { maxBytes: 1000 };
    await assert.rejects(loadImage(big, limits), code('IMAGE_TOO_LARGE'));
    await assert.rejects(loadImage({ path }, limits), code('IMAGE_TOO_LARGE'));
    await assert.rejects(
      loadImage({ base64: Buffer.from(big).toString('base64') }, limits),
      code('IMAGE_TOO_LARGE'),
    );
    // A base64 string far over the limit is refused from its length alone (no 40 MB decode).
    await assert.rejects(
      loadImage({ base64: 'A'.repeat(4 * DEFAULT_MAX_IMAGE_BYTES) }),
      code('IMAGE_TOO_LARGE'),
    );
    assert.equal((await loadImage(big, { maxBytes: 2000 })).mime, 'image/png');
    await assert.rejects(loadImage(big, { maxBytes: 0 }), code('INVALID_OPTION'));
  });

  it('gives clear errors for unreadable or malformed input', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'guard-img-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const text = join(dir, 'notes.png');
    writeFileSync(text, 'just some text pretending to be a PNG');
    await assert.rejects(loadImage({ path: join(dir, 'missing.png') }), code('IMAGE_READ'));
    await assert.rejects(loadImage({ path: dir }), code('IMAGE_READ'));
    await assert.rejects(loadImage({ path: text }), code('IMAGE_TYPE'));
    await assert.rejects(loadImage({ base64: 'not base64 at all!' }), code('IMAGE_READ'));
    await assert.rejects(loadImage({ base64: 'data:image/png,rawtext' }), code('IMAGE_READ'));
    const b64 = Buffer.from(TINY_PNG).toString('base64');
    await assert.rejects(loadImage({ base64: `data:image/jpeg;base64,${b64}` }), code('IMAGE_TYPE'));
    await assert.rejects(loadImage('x.png' as never), code('IMAGE_READ'));
  });
});
