/**
 * Hostile-input tests of the HTTP API: every malformed, oversize, slow, forged, replayed or
 * unauthorized request gets the right typed 4xx, the global model and what is stored of the
 * accepted updates (the journal, and the task's folded state, see Storage.commitFolded) stay exactly
 * as they were, and the server keeps serving.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { Rng } from '../core/rng.ts';
import { type RunningServer, startServer } from './index.ts';
import {
  type ApiErrorBody,
  BINARY_CONTENT_TYPE,
  type CheckinResponse,
  encodeFrame,
  FRAME_KIND_MODEL,
  FRAME_KIND_UPDATE,
  type UpdateResponse,
} from './protocol.ts';
import type { Checkpoint, JournalEntry } from './storage/types.ts';

const NUM_PARAMS = 15; // softmax 4 inputs × 3 classes + 3 biases
const TASK = {
  taskId: 'fuzz',
  modelInput: { inputKind: 'dense', inputDim: 4, numClasses: 3 },
  model: { kind: 'softmax' },
  strategy: { kind: 'fedbuff', bufferSize: 2, staleness: { kind: 'constant' }, maxStaleness: 1 },
  normBound: 10,
  concurrency: 1000,
  evalEvery: 0,
};

let server: RunningServer;
let dir: string;
let tokenA: string;
let tokenB: string;
let deviceB: string;

type Train = Extract<CheckinResponse, { action: 'train' }>;

async function post(
  path: string,
  body: BodyInit | null,
  headers: Record<string, string> = {},
): Promise<Response> {
  return fetch(`${server.url}${path}`, { method: 'POST', body, headers });
}

async function register(): Promise<{ deviceId: string; token: string }> {
  const res = await post('/v1/devices/register', JSON.stringify({ enrollmentKey: server.enrollmentKey }), {
    'content-type': 'application/json',
  });
  assert.equal(res.status, 201);
  return (await res.json()) as { deviceId: string; token: string };
}

async function checkin(token: string): Promise<Train> {
  const res = await post('/v1/checkin', '{}', {
    authorization: `Bearer ${token}`,
    'content-type': 'application/json',
  });
  assert.equal(res.status, 200);
  const body = (await res.json()) as CheckinResponse;
  assert.equal(body.action, 'train');
  return body as Train;
}

function updateFrame(a: Train, delta: Float32Array, header: Record<string, unknown> = {}): Uint8Array {
  return encodeFrame(
    FRAME_KIND_UPDATE,
    { taskId: a.taskId, assignmentId: a.assignmentId, baseVersion: a.version, numExamples: 2, ...header },
    delta,
  );
}

function upload(
  token: string | null,
  body: Uint8Array | string,
  opts: { key?: string | null; task?: string; type?: string; query?: string } = {},
) {
  const headers: Record<string, string> = { 'content-type': opts.type ?? BINARY_CONTENT_TYPE };
  if (token !== null) headers.authorization = `Bearer ${token}`;
  if (opts.key !== null) headers['idempotency-key'] = opts.key ?? 'k';
  return post(`/v1/tasks/${opts.task ?? 'fuzz'}/updates${opts.query ?? ''}`, body as BodyInit, headers);
}

async function expectError(res: Response | Promise<Response>, status: number, code: string): Promise<void> {
  const r = await res;
  const text = await r.text();
  assert.equal(r.status, status, `expected ${status} ${code}, got ${r.status} ${text}`);
  const body = JSON.parse(text) as ApiErrorBody;
  assert.equal(body.error.code, code, text);
  assert.equal(typeof body.error.message, 'string');
}

/** A copy of `frame` (same float count) whose header JSON text is replaced by `json`. */
function withRawHeader(frame: Uint8Array, json: string): Uint8Array {
  const floats = new Float32Array(NUM_PARAMS);
  const bytes = new TextEncoder().encode(json);
  const floatStart = (12 + bytes.length + 3 + 4) & ~3;
  const out = new Uint8Array(floatStart + floats.length * 4);
  out.set(frame.subarray(0, 8));
  const view = new DataView(out.buffer);
  view.setUint32(8, bytes.length, true);
  out.set(bytes, 12);
  view.setUint32(floatStart - 4, floats.length, true);
  return out;
}

function delta(value: number): Float32Array {
  return new Float32Array(NUM_PARAMS).fill(value);
}

async function state(): Promise<{
  params: number[];
  journal: JournalEntry[];
  folded: Checkpoint | null;
  version: number;
}> {
  const c = server.coordinator;
  assert.ok(c !== null);
  return {
    params: Array.from(c.params() ?? []),
    journal: await server.storage.journalSince('fuzz', 0),
    folded: await server.storage.foldedState('fuzz'),
    version: c.version,
  };
}

/** Raw HTTP request for what fetch cannot do (chunked oversize bodies). */
function rawPost(
  path: string,
  headers: Record<string, string>,
  write: (req: ReturnType<typeof httpRequest>) => void,
) {
  return new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = httpRequest(`${server.url}${path}`, { method: 'POST', headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        body += c;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.setTimeout(5000, () => req.destroy(new Error('no answer within 5 s')));
    write(req);
  });
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'orchard-api-'));
  server = await startServer({ dataDir: dir, task: TASK, limits: { bodyTimeoutMs: 300 } });
  tokenA = (await register()).token;
  const b = await register();
  tokenB = b.token;
  deviceB = b.deviceId;
  // One legitimate update so the journal is not empty.
  const a = await checkin(tokenA);
  const res = await upload(tokenA, updateFrame(a, delta(0.5)), { key: a.assignmentId });
  assert.equal(res.status, 200);
});

after(async () => {
  await server?.close();
  rmSync(dir, { recursive: true, force: true });
});

test('hostile requests get typed 4xx and change neither the model nor the journal', async () => {
  const before = await state();
  // The one legitimate update is stored inside the folded state (the embedded server's way).
  assert.equal(before.journal.length, 0);
  assert.equal(before.folded?.journalSeq, 1);
  const a = await checkin(tokenA);
  const good = updateFrame(a, delta(0.25));

  // Authentication.
  await expectError(upload(null, good), 401, 'unauthenticated');
  await expectError(upload('not-a-token', good), 401, 'unauthenticated');
  await expectError(upload(tokenB, good, { key: 'x' }), 403, 'forbidden'); // A's assignment
  await expectError(
    post('/v1/devices/register', JSON.stringify({ enrollmentKey: 'wrong' }), {
      'content-type': 'application/json',
    }),
    401,
    'unauthenticated',
  );
  await expectError(
    post('/v1/devices/register', '{"enrollmentKey":', { 'content-type': 'application/json' }),
    400,
    'bad_request',
  );
  await expectError(
    post('/v1/checkin', '{}', { 'content-type': 'application/json' }),
    401,
    'unauthenticated',
  );

  // Malformed frames and headers.
  await expectError(upload(tokenA, new Uint8Array([1, 2, 3])), 400, 'bad_request');
  await expectError(upload(tokenA, good.subarray(0, good.length - 4)), 400, 'bad_request');
  const badMagic = new Uint8Array(good);
  badMagic[0] = 0;
  await expectError(upload(tokenA, badMagic), 400, 'bad_request');
  const modelKind = encodeFrame(FRAME_KIND_MODEL, { taskId: 'fuzz', version: 0 }, delta(0));
  await expectError(upload(tokenA, modelKind), 400, 'bad_request');
  await expectError(
    upload(tokenA, encodeFrame(FRAME_KIND_UPDATE, [1, 2] as unknown as object, delta(0))),
    400,
    'bad_request',
  );
  await expectError(upload(tokenA, updateFrame(a, delta(0), { baseVersion: 'zero' })), 400, 'bad_request');
  await expectError(
    upload(tokenA, JSON.stringify({ delta: [1, 2] }), { type: 'application/json' }),
    400,
    'bad_request',
  );
  await expectError(upload(tokenA, good, { key: null }), 400, 'bad_request');
  await expectError(upload(tokenA, good, { type: '' }), 400, 'bad_request'); // no Content-Type
  await expectError(upload(tokenA, good, { task: '%E0%A4%A' }), 400, 'bad_request'); // bad escape
  // The task id is percent-decoded ('fu%7Az' is 'fuzz', so the frame is what gets refused, not the task).
  await expectError(upload(tokenA, new Uint8Array([1, 2, 3]), { task: 'fu%7Az' }), 400, 'bad_request');

  // Values.
  const nan = delta(0.1);
  nan[3] = Number.NaN;
  await expectError(upload(tokenA, updateFrame(a, nan)), 422, 'non_finite');
  const inf = delta(0.1);
  inf[NUM_PARAMS - 1] = Number.NEGATIVE_INFINITY;
  await expectError(upload(tokenA, updateFrame(a, inf)), 422, 'non_finite');
  // numExamples = 1e400 parses to Infinity (JSON.stringify cannot write it, so patch the bytes).
  const header = JSON.stringify({
    taskId: 'fuzz',
    assignmentId: a.assignmentId,
    baseVersion: a.version,
    numExamples: 7,
  });
  const hugeHeader = header.replace('"numExamples":7', '"numExamples":1e400');
  await expectError(upload(tokenA, withRawHeader(good, hugeHeader)), 422, 'non_finite');
  await expectError(upload(tokenA, updateFrame(a, new Float32Array(NUM_PARAMS - 1))), 422, 'shape');
  await expectError(upload(tokenA, updateFrame(a, delta(3))), 422, 'norm_bound'); // ‖·‖ = 3·√15 ≈ 11.6 > 10

  // Versions, tasks, assignments.
  await expectError(
    upload(tokenA, updateFrame(a, delta(0.1), { baseVersion: a.version + 1 })),
    409,
    'unknown_version',
  );
  await expectError(upload(tokenA, good, { task: 'other' }), 404, 'not_found');
  await expectError(upload(tokenA, updateFrame(a, delta(0.1), { taskId: 'other' })), 400, 'bad_request');
  const forged = `${a.assignmentId.split('.')[0]}.AAAAAAAAAAAAAAAAAAAAAA`;
  await expectError(
    upload(tokenA, updateFrame(a, delta(0.1), { assignmentId: forged })),
    409,
    'not_assigned',
  );
  await expectError(
    fetch(`${server.url}/v1/tasks/fuzz/models/99`, { headers: { authorization: `Bearer ${tokenA}` } }),
    409,
    'unknown_version',
  );
  await expectError(fetch(`${server.url}/v1/nothing-here`), 404, 'not_found');

  // Oversize bodies: declared, and chunked without a length.
  const big = new Uint8Array(NUM_PARAMS * 4 + 64 * 1024 + 1);
  await expectError(upload(tokenA, big), 413, 'payload_too_large');
  const chunked = await rawPost(
    '/v1/tasks/fuzz/updates',
    {
      authorization: `Bearer ${tokenA}`,
      'content-type': BINARY_CONTENT_TYPE,
      'idempotency-key': 'c',
      'transfer-encoding': 'chunked',
    },
    (req) => {
      const piece = Buffer.alloc(16 * 1024);
      for (let i = 0; i < 6; i++) req.write(piece);
      req.end();
    },
  );
  assert.equal(chunked.status, 413, chunked.body);
  assert.equal((JSON.parse(chunked.body) as ApiErrorBody).error.code, 'payload_too_large');

  // A client dropping mid-upload: headers and a third of the frame, then the connection closes.
  await new Promise<void>((resolve, reject) => {
    const url = new URL(server.url);
    const socket = connect(Number(url.port), url.hostname, () => {
      socket.write(
        `POST /v1/tasks/fuzz/updates HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${tokenA}\r\n` +
          `Content-Type: ${BINARY_CONTENT_TYPE}\r\nIdempotency-Key: ${a.assignmentId}\r\nContent-Length: ${good.length}\r\n\r\n`,
      );
      socket.write(good.subarray(0, Math.floor(good.length / 3)), () => {
        socket.destroy();
        resolve();
      });
    });
    socket.on('error', reject);
  });
  await new Promise((r) => setTimeout(r, 50));

  // A slow body: headers and half the frame, then silence past the 300 ms body deadline.
  const slow = await new Promise<string>((resolve, reject) => {
    const url = new URL(server.url);
    const socket = connect(Number(url.port), url.hostname);
    let answer = '';
    socket.setEncoding('utf8');
    socket.on('data', (c: string) => {
      answer += c;
    });
    socket.on('close', () => resolve(answer));
    socket.on('error', reject);
    socket.setTimeout(5000, () => socket.destroy(new Error('no answer within 5 s')));
    socket.write(
      `POST /v1/tasks/fuzz/updates HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${tokenA}\r\n` +
        `Content-Type: ${BINARY_CONTENT_TYPE}\r\nIdempotency-Key: slow\r\nContent-Length: ${good.length}\r\n\r\n`,
    );
    socket.write(good.subarray(0, 20));
  });
  assert.match(slow, /^HTTP\/1\.1 408/);
  assert.match(slow, /"code":"timeout"/);

  // Revocation: wrong admin token, then the real one; the revoked device is locked out.
  await expectError(
    post(`/v1/admin/devices/${deviceB}/revoke`, null, { authorization: 'Bearer nope' }),
    403,
    'forbidden',
  );
  await expectError(
    post('/v1/admin/devices/unknown/revoke', null, { authorization: `Bearer ${server.adminToken}` }),
    404,
    'not_found',
  );
  const revoked = await post(`/v1/admin/devices/${deviceB}/revoke`, null, {
    authorization: `Bearer ${server.adminToken}`,
  });
  assert.equal(revoked.status, 200);
  await expectError(
    post('/v1/checkin', '{}', { authorization: `Bearer ${tokenB}`, 'content-type': 'application/json' }),
    401,
    'revoked',
  );

  const afterAll = await state();
  assert.deepEqual(afterAll, before);
  const health = await fetch(`${server.url}/healthz`);
  assert.equal(health.status, 200);
});

test('a replayed idempotency key gets the same answer and is applied once', async () => {
  const a = await checkin(tokenA);
  const frame = updateFrame(a, delta(0.125));
  const acceptedBefore = server.coordinator?.counts.accepted ?? -1;
  const [first, concurrent] = await Promise.all([
    upload(tokenA, frame, { key: a.assignmentId }),
    upload(tokenA, frame, { key: a.assignmentId }),
  ]);
  const one = (await first.json()) as UpdateResponse;
  const two = (await concurrent.json()) as UpdateResponse;
  // A query string does not change the route (as with fastify's routing of the other routes).
  const later = (await (
    await upload(tokenA, frame, { key: 'another-key', task: 'fuzz', query: '?via=replay' })
  ).json()) as UpdateResponse;
  assert.equal(first.status, 200);
  assert.equal(concurrent.status, 200);
  assert.deepEqual([one.duplicate, two.duplicate].sort(), [false, true]);
  for (const r of [one, two, later]) {
    assert.equal(r.accepted, true);
    assert.equal(r.version, one.version);
    assert.equal(r.staleness, one.staleness);
  }
  assert.equal(later.duplicate, true);
  assert.equal(server.coordinator?.counts.accepted, acceptedBefore + 1);
  const stored = await server.storage.lookupIdempotencyKey('fuzz', a.assignmentId);
  assert.deepEqual(stored?.response, { ...one, duplicate: false });
});

test('an update staler than maxStaleness is refused without touching the model', async () => {
  const old = await checkin(tokenA);
  // bufferSize 2: four accepted updates move the model two versions on.
  for (let i = 0; i < 4; i++) {
    const a = await checkin(tokenA);
    assert.equal((await upload(tokenA, updateFrame(a, delta(0.01)), { key: a.assignmentId })).status, 200);
  }
  const before = await state();
  assert.ok(before.version - old.version >= 2, `version moved ${before.version - old.version}`);
  await expectError(upload(tokenA, updateFrame(old, delta(0.01)), { key: old.assignmentId }), 409, 'stale');
  assert.deepEqual(await state(), before);
  const status = (await (await fetch(`${server.url}/v1/status`)).json()) as {
    tasks: { rejected: Record<string, number> }[];
  };
  assert.equal(status.tasks[0]?.rejected.stale, 1);
});

test('seeded random frame corruption: always a typed 4xx or success, never a 5xx, server stays up', async () => {
  const rng = new Rng(2026);
  const codes = new Set<number>();
  for (let i = 0; i < 60; i++) {
    const a = await checkin(tokenA);
    const frame = new Uint8Array(updateFrame(a, delta(0.001)));
    const kind = rng.int(3);
    let body: Uint8Array = frame;
    if (kind === 0) body = frame.subarray(0, rng.int(frame.length));
    else if (kind === 1)
      for (let f = 0; f < 1 + rng.int(4); f++) {
        const at = rng.int(Math.min(frame.length, 64));
        body[at] = (body[at] as number) ^ (1 << rng.int(8));
      }
    else body = Uint8Array.from({ length: rng.int(200) }, () => rng.int(256));
    const res = await upload(tokenA, body, { key: a.assignmentId });
    codes.add(res.status);
    assert.ok(res.status === 200 || (res.status >= 400 && res.status < 500), `status ${res.status}`);
    if (res.status !== 200) assert.equal(typeof ((await res.json()) as ApiErrorBody).error.code, 'string');
    else await res.arrayBuffer();
  }
  assert.ok(codes.has(400));
  assert.equal((await fetch(`${server.url}/healthz`)).status, 200);
});
