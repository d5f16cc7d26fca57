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
