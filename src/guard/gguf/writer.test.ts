import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { readGgufFileInfo } from 'node-llama-cpp';
import { decodeTensor, tensorBytes } from './quant.ts';
import { gguf, type TensorSpec, writeGguf } from './writer.ts';

function tempDir(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'orchard-gguf-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const ramp =
  (scale: number) =>
  (start: number, out: Float32Array): void => {
    for (let i = 0; i < out.length; i++) out[i] = Math.sin((start + i) * 0.37) * scale;
  };

test('a written file reads back through node-llama-cpp’s GGUF parser: header, every value type, tensors', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'm.gguf');
  const tensors: TensorSpec[] = [
    { name: 'a.f32', shape: [5, 3], type: 'F32', fill: ramp(2) },
    { name: 'b.f16', shape: [7], type: 'F16', fill: ramp(1) },
    { name: 'c.q8', shape: [64, 3], type: 'Q8_0', fill: ramp(3) },
    { name: 'd.q4', shape: [32, 2, 2], type: 'Q4_0', fill: ramp(0.5) },
  ];
  const size = writeGguf(path, {
    metadata: [
      ['general.architecture', gguf.str('llama')],
      ['t.u8', { kind: 'u8', value: 200 }],
      ['t.i8', { kind: 'i8', value: -100 }],
      ['t.u16', { kind: 'u16', value: 60000 }],
      ['t.i16', { kind: 'i16', value: -30000 }],
      ['t.u32', gguf.u32(4000000000)],
      ['t.i32', gguf.i32(-2000000000)],
      ['t.f32', gguf.f32(0.5)],
      ['t.bool', gguf.bool(true)],
      ['t.u64', { kind: 'u64', value: 2n ** 40n }],
      ['t.i64', { kind: 'i64', value: -(2n ** 40n) }],
      ['t.f64', { kind: 'f64', value: 1e-300 }],
      ['t.str', gguf.str('héllo ✓')],
      ['t.strs', gguf.arr('string', ['a', '', 'Ġb'])],
      ['t.ints', gguf.arr('i32', [1, -2, 3])],
    ],
    tensors,
  });
  const raw = readFileSync(path);
  assert.equal(raw.length, size);
  // Header by hand: magic "GGUF", version 3, 4 tensors, 15 metadata entries.
  assert.equal(raw.subarray(0, 4).toString('latin1'), 'GGUF');
  assert.equal(raw.readUInt32LE(4), 3);
  assert.equal(raw.readBigUInt64LE(8), 4n);
  assert.equal(raw.readBigUInt64LE(16), 15n);

  const info = await readGgufFileInfo(path, { logWarnings: false });
  assert.equal(info.version, 3);
  const md = info.metadata as unknown as { t: Record<string, unknown> };
  assert.deepEqual(
    { ...md.t },
    {
      u8: 200,
      i8: -100,
      u16: 60000,
      i16: -30000,
      u32: 4000000000,
      i32: -2000000000,
      f32: 0.5,
      bool: true,
      u64: 2n ** 40n,
      i64: -(2n ** 40n),
      f64: 1e-300,
      str: 'héllo ✓',
      strs: ['a', '', 'Ġb'],
      ints: [1, -2, 3],
    },
  );
  const infos = info.tensorInfo ?? [];
  assert.deepEqual(
    infos.map((i) => [i.name, i.dimensions.map(Number), i.ggmlType]),
    [
      ['a.f32', [5, 3], 0],
      ['b.f16', [7], 1],
      ['c.q8', [64, 3], 8],
      ['d.q4', [32, 2, 2], 2],
    ],
  );
  for (const [k, ti] of infos.entries()) {
    const spec = tensors[k] as TensorSpec;
    assert.equal(Number(ti.fileOffset) % 32, 0, `${ti.name} is aligned`);
    const count = spec.shape.reduce((a, b) => a * b, 1);
    const bytes = raw.subarray(Number(ti.fileOffset), Number(ti.fileOffset) + tensorBytes(spec.type, count));
    const values = decodeTensor(spec.type, bytes, count);
    const expected = new Float32Array(count);
    spec.fill(0, expected);
    const tol = { F32: 0, F16: 1e-3, Q8_0: 0.02, Q4_0: 0.07 }[spec.type];
    for (let i = 0; i < count; i++) {
      assert.ok(Math.abs((values[i] as number) - (expected[i] as number)) <= tol, `${ti.name}[${i}]`);
    }
  }
});

test('bad inputs are rejected before anything is written', (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'bad.gguf');
  const one = (shape: number[], type: TensorSpec['type']): TensorSpec => ({
    name: 'x',
    shape,
    type,
    fill: ramp(1),
  });
  assert.throws(() => writeGguf(path, { metadata: [], tensors: [one([33], 'Q4_0')] }), /multiple of 32/);
  assert.throws(() => writeGguf(path, { metadata: [], tensors: [one([0], 'F32')] }), /bad shape/);
  assert.throws(
    () => writeGguf(path, { metadata: [], tensors: [one([32], 'F32'), one([32], 'F32')] }),
    /duplicate tensor/,
  );
  assert.throws(
    () =>
      writeGguf(path, {
        metadata: [
          ['k', gguf.u32(1)],
          ['k', gguf.u32(2)],
        ],
        tensors: [],
      }),
    /duplicate metadata/,
  );
  assert.throws(() => writeGguf(path, { metadata: [['k', gguf.u32(-1)]], tensors: [] }), /not a valid u32/);
  assert.throws(() => writeGguf(path, { metadata: [], tensors: [], alignment: 12 }), /alignment/);
  // A fill that fails midway leaves neither the file nor a temp file behind.
  const failing: TensorSpec = {
    name: 'y',
    shape: [32],
    type: 'F32',
    fill: () => {
      throw new Error('boom');
    },
  };
  assert.throws(() => writeGguf(path, { metadata: [], tensors: [failing] }), /boom/);
  assert.equal(existsSync(path), false);
  assert.deepEqual(readdirSync(dir), []);
});
