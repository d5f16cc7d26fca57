import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { loadFileDataset, parseCsv } from './loaders.ts';
import type { DenseExamples, Examples } from './types.ts';

const dir = mkdtempSync(join(tmpdir(), 'orchard-loaders-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function write(name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

function dense(e: Examples): DenseExamples {
  assert.equal(e.kind, 'dense');
  return e as DenseExamples;
}

test('parseCsv: RFC 4180 quoting, CRLF, embedded newlines, doubled quotes', () => {
  const recs = parseCsv('a,b,c\r\n"x,1","say ""hi""",3\r\n"multi\nline",,5\n', 'f.csv');
  assert.deepEqual(
    recs.map((r) => r.fields),
    [
      ['a', 'b', 'c'],
      ['x,1', 'say "hi"', '3'],
      ['multi\nline', '', '5'],
    ],
  );
  assert.deepEqual(
    recs.map((r) => r.line),
    [1, 2, 3],
  );
  assert.throws(() => parseCsv('a,b\n"open,1\n', 'f.csv'), /f\.csv:2: unterminated/);
  assert.throws(() => parseCsv('a,b\n"x"y,1\n', 'f.csv'), /f\.csv:2: unexpected text/);
  assert.throws(() => parseCsv('a,b\nx"y,1\n', 'f.csv'), /f\.csv:2: quote inside/);
});

test('CSV: clients, string labels, features, per-client split', () => {
  const lines = ['client_id,f1,label,f2'];
  // 3 clients with 10, 5 and 1 rows; labels cat/dog; f1 = row number so rows can be traced.
  let row = 0;
  for (const [client, count] of [
    ['alice', 10],
    ['bob', 5],
    ['carol', 1],
  ] as const) {
    for (let i = 0; i < count; i++, row++) lines.push(`${client},${row},${row % 2 ? 'dog' : 'cat'},${-row}`);
  }
  const path = write('ok.csv', `${lines.join('\n')}\n`);
  const ds = loadFileDataset({ path, seed: 1, testFraction: 0.2 });
  assert.deepEqual(ds.clientIds, ['alice', 'bob', 'carol']);
  assert.deepEqual(ds.labelNames, ['cat', 'dog']);
  assert.deepEqual(ds.featureNames, ['f1', 'f2']);
  assert.equal(ds.numClients, 3);
  assert.equal(ds.numClasses, 2);
  assert.equal(ds.inputDim, 2);
  // round(0.2·10) = 2, round(0.2·5) = 1, a single row stays in training.
  assert.deepEqual([ds.clientSize(0), ds.clientSize(1), ds.clientSize(2)], [8, 4, 1]);
  const testSet = dense(ds.testSet());
  assert.equal(testSet.n, 3);
  const seen = new Set<number>();
  for (const e of [...[0, 1, 2].map((k) => dense(ds.client(k))), testSet]) {
    for (let r = 0; r < e.n; r++) {
      const id = e.x[r * 2] as number;
      assert.equal((e.x[r * 2 + 1] as number) + id, 0);
      assert.equal(e.y[r], id % 2);
      seen.add(id);
    }
  }
  assert.equal(seen.size, 16);
  for (let r = 0; r < 8; r++) assert.ok((dense(ds.client(0)).x[r * 2] as number) < 10);
  assert.deepEqual(loadFileDataset({ path, seed: 1, testFraction: 0.2 }).testSet(), testSet);
});

test('numeric labels map in numeric order; numeric client ids', () => {
  const path = write('num.csv', 'label,client_id,x\n10,1,0.5\n2,1,1.5\n10,2,2\n2,2,3\n9,2,4\n');
  const ds = loadFileDataset({ path, seed: 3, testFraction: 0.4 });
  assert.deepEqual(ds.labelNames, ['2', '9', '10']);
  assert.deepEqual(ds.clientIds, ['1', '2']);
});

test('JSONL: same semantics, custom column names', () => {
  const rows = [
    { user: 'u1', y: 'spam', a: 1, b: 2 },
    { user: 'u1', y: 'ham', a: 3, b: 4 },
    { user: 7, y: 'ham', b: 6, a: 5 },
    { user: 7, y: 'spam', a: 7, b: 8 },
  ];
  const path = write('ok.jsonl', `${rows.map((r) => JSON.stringify(r)).join('\n')}\n\n`);
  const ds = loadFileDataset({ path, seed: 1, clientColumn: 'user', labelColumn: 'y', testFraction: 0.5 });
  assert.deepEqual(ds.clientIds, ['u1', '7']);
  assert.deepEqual(ds.labelNames, ['ham', 'spam']);
  assert.deepEqual(ds.featureNames, ['a', 'b']);
  const all = [dense(ds.client(0)), dense(ds.client(1)), dense(ds.testSet())];
  const pairs = all.flatMap((e) =>
    Array.from({ length: e.n }, (_, r) => [e.x[r * 2], e.x[r * 2 + 1], e.y[r]]),
  );
  pairs.sort((p, q) => (p[0] as number) - (q[0] as number));
  assert.deepEqual(pairs, [
    [1, 2, 1],
    [3, 4, 0],
    [5, 6, 0],
    [7, 8, 1],
  ]);
});

test('bad rows name file, line and column', () => {
  const cases: Array<[string, string, RegExp]> = [
    [
      'nonnum.csv',
      'client_id,label,x\na,1,2\nb,0,abc\n',
      /nonnum\.csv:3: column "x": "abc" is not a finite number/,
    ],
    ['ragged.csv', 'client_id,label,x\na,1,2\nb,0\n', /ragged\.csv:3: row has 2 fields, header has 3/],
    ['nolabel.csv', 'client_id,label,x\na,,2\n', /nolabel\.csv:2: missing label in column "label"/],
    ['noclient.csv', 'client_id,label,x\n,1,2\n', /noclient\.csv:2: missing client id/],
    ['nocol.csv', 'id,label,x\na,1,2\n', /nocol\.csv:1: no client column "client_id"/],
    ['empty.csv', '', /empty\.csv: file is empty/],
    ['dup.csv', 'client_id,label,x,x\n', /dup\.csv:1: duplicate column "x"/],
    [
      'bad.jsonl',
      '{"client_id":"a","label":1,"x":1}\n{"client_id":"a","label":1,"x":"2"}\n',
      /bad\.jsonl:2: column "x"/,
    ],
    [
      'miss.jsonl',
      '{"client_id":"a","label":1,"x":1}\n{"client_id":"a","x":2}\n',
      /miss\.jsonl:2: missing label/,
    ],
    [
      'extra.jsonl',
      '{"client_id":"a","label":1,"x":1}\n{"client_id":"a","label":0,"x":2,"z":1}\n',
      /extra\.jsonl:2: column "z"/,
    ],
    ['broken.jsonl', '{"client_id":"a","label":1,"x":1}\n{oops\n', /broken\.jsonl:2: invalid JSON/],
    ['arr.jsonl', '[1,2]\n', /arr\.jsonl:1: expected a JSON object/],
    ['single.csv', 'client_id,label,x\na,1,2\n', /holds out nothing/],
  ];
  for (const [name, text, message] of cases) {
    const path = write(name, text);
    assert.throws(
      () => loadFileDataset({ path, seed: 1 }),
      (e: unknown) => {
        assert.equal((e as { code?: string }).code, 'DATA_INVALID', name);
        assert.match((e as Error).message, message);
        return true;
      },
    );
  }
  assert.throws(() => loadFileDataset({ path: join(dir, 'missing.csv'), seed: 1 }), { code: 'DATA_INVALID' });
  assert.throws(() => loadFileDataset({ path: write('x.txt', 'a'), seed: 1 }), /set format/);
  assert.throws(
    () => loadFileDataset({ path: write('ok2.csv', 'client_id,label,x\n'), seed: 1, testFraction: 1 }),
    {
      code: 'INVALID_ARGUMENT',
    },
  );
});
