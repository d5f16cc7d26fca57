import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  decodeFrame,
  encodeFrame,
  FRAME_KIND_MODEL,
  FRAME_KIND_UPDATE,
  FrameError,
  routePath,
} from './protocol.ts';

test('frames round-trip header and floats bit for bit, floats 4-aligned', () => {
  for (const name of ['', 'a', 'ab', 'abc', 'task-with-a-longer-name']) {
    const floats = new Float32Array([1.5, -0, Number.MIN_VALUE, 3.4e38, -7]);
    const bytes = encodeFrame(FRAME_KIND_UPDATE, { taskId: name, baseVersion: 4 }, floats);
    assert.equal(bytes.length % 4, 0);
    const back = decodeFrame<{ taskId: string; baseVersion: number }>(bytes, FRAME_KIND_UPDATE);
    assert.deepEqual(back.header, { taskId: name, baseVersion: 4 });
    assert.deepEqual(new Uint32Array(back.floats.buffer), new Uint32Array(floats.buffer));
  }
});

test('a frame written from parts, or into reused memory, has the bytes of a fresh one from the joined floats', () => {
  const a = new Float32Array([1.5, -0, Number.NaN]);
  const b = new Float32Array([Number.MIN_VALUE, -7]);
  for (const name of ['', 'ab', 'task-with-a-longer-name']) {
    const header = { taskId: name, version: 9 };
    const joined = new Float32Array([...a, ...b]);
    const fresh = encodeFrame(FRAME_KIND_MODEL, header, joined);
    assert.deepEqual(encodeFrame(FRAME_KIND_MODEL, header, [a, b]), fresh);
    // Dirty memory at an offset: every byte of the frame is written, padding included.
    const memory = new Uint8Array(fresh.length + 64).fill(0xab);
    const reused = encodeFrame(FRAME_KIND_MODEL, header, [a, b], memory.subarray(8));
    assert.equal(reused.buffer, memory.buffer);
    assert.deepEqual(Buffer.from(reused), Buffer.from(fresh));
    // Too small, or not 4-aligned: a fresh buffer instead.
    assert.notEqual(
      encodeFrame(FRAME_KIND_MODEL, header, [a, b], memory.subarray(0, 8)).buffer,
      memory.buffer,
    );
    assert.notEqual(encodeFrame(FRAME_KIND_MODEL, header, [a, b], memory.subarray(2)).buffer, memory.buffer);
  }
});

test('malformed frames are refused with FrameError', () => {
  const good = encodeFrame(FRAME_KIND_MODEL, { taskId: 't', version: 1 }, new Float32Array(3));
  assert.throws(() => decodeFrame(good.subarray(0, 10)), FrameError);
  assert.throws(() => decodeFrame(good.subarray(0, good.length - 4)), FrameError);
  assert.throws(() => decodeFrame(good, FRAME_KIND_UPDATE), FrameError);
  const badMagic = good.slice();
  badMagic[0] = 0;
  assert.throws(() => decodeFrame(badMagic), FrameError);
  const hugeHeader = good.slice();
  new DataView(hugeHeader.buffer).setUint32(8, 1 << 30, true);
  assert.throws(() => decodeFrame(hugeHeader), FrameError);
  const arrayHeader = encodeFrame(FRAME_KIND_MODEL, [1, 2], new Float32Array(1));
  assert.throws(() => decodeFrame(arrayHeader), FrameError);
});

test('routePath fills and escapes parameters', () => {
  assert.equal(
    routePath('/v1/tasks/:taskId/models/:version', { taskId: 'a b', version: 3 }),
    '/v1/tasks/a%20b/models/3',
  );
  assert.throws(() => routePath('/v1/tasks/:taskId', {}));
});
