/** Helpers for server tests: `orchard serve` as a child process, device registration, updates. */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  BINARY_CONTENT_TYPE,
  type CheckinResponse,
  encodeFrame,
  FRAME_KIND_UPDATE,
  type StatusResponse,
  type UpdateResponse,
} from './protocol.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

export interface ServeChild {
  readonly child: ChildProcess;
  readonly url: string;
  readonly enrollmentKey: string;
  readonly adminToken: string;
}

/**
 * Starts `orchard serve --port 0 …args` and resolves once it printed its URL (20 s deadline).
 * `entry: 'serve'` runs src/cli/commands/serve.ts directly (the same command, faster to start).
 */
export function startServeChild(
  args: readonly string[],
  entry: 'cli' | 'serve' = 'cli',
): Promise<ServeChild> {
  const command = entry === 'cli' ? ['src/cli/main.ts', 'serve'] : ['src/cli/commands/serve.ts'];
  const child = spawn(process.execPath, ['--import', 'tsx', ...command, '--port', '0', ...args], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`server did not start within 20 s: ${out} ${err}`));
    }, 20_000);
    child.stderr?.on('data', (c: Buffer) => {
      err += c.toString();
    });
    child.stdout?.on('data', (c: Buffer) => {
      out += c.toString();
      const url = /dashboard:\s+(\S+)\//.exec(out)?.[1];
      const enrollmentKey = /enrollment key:\s+(\S+)/.exec(out)?.[1];
      const adminToken = /admin token:\s+(\S+)/.exec(out)?.[1];
      if (url !== undefined && enrollmentKey !== undefined && adminToken !== undefined) {
        clearTimeout(timer);
        resolve({ child, url, enrollmentKey, adminToken });
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code}: ${err}`));
    });
  });
}

/** A data folder and task file for one `orchard serve` child at a time, killed and restarted by a test. */
export interface ServeWorkspace {
  readonly dataDir: string;
  /** Starts the child on the workspace (none may be running). */
  start(): Promise<ServeChild>;
  /** Ends the running child (SIGKILL by default) and resolves once it is gone. */
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/** The workspace lives in a temporary folder; the test's cleanup kills a child still running, then removes it. */
export function serveWorkspace(
  t: { after(fn: () => Promise<void>): void },
  prefix: string,
  task: unknown,
): ServeWorkspace {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const taskFile = join(dir, 'task.json');
  writeFileSync(taskFile, JSON.stringify(task));
  const dataDir = join(dir, 'data');
  let current: ChildProcess | null = null;
  const stop = async (signal: NodeJS.Signals = 'SIGKILL') => {
    const child = current;
    current = null;
    if (child !== null) await stopChild(child, signal);
  };
  t.after(async () => {
    await stop();
    rmSync(dir, { recursive: true, force: true });
  });
  return {
    dataDir,
    async start() {
      assert.equal(current, null, 'a server is already running on this workspace');
      const server = await startServeChild(['--data-dir', dataDir, '--task', taskFile], 'serve');
      current = server.child;
      return server;
    },
    stop,
  };
}

/** SIGKILL (default) or SIGTERM, resolving once the process is gone. */
export function stopChild(child: ChildProcess, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill(signal);
  });
}

export async function registerDevice(
  url: string,
  enrollmentKey: string,
): Promise<{ deviceId: string; token: string }> {
  const res = await fetch(`${url}/v1/devices/register`, {
    method: 'POST',
    body: JSON.stringify({ enrollmentKey }),
    headers: { 'content-type': 'application/json' },
    signal: AbortSignal.timeout(10_000),
  });
  if (res.status !== 201) throw new Error(`register: ${res.status} ${await res.text()}`);
  return (await res.json()) as { deviceId: string; token: string };
}

export type Train = Extract<CheckinResponse, { action: 'train' }>;

export async function checkinDevice(url: string, token: string): Promise<CheckinResponse> {
  const res = await fetch(`${url}/v1/checkin`, {
    method: 'POST',
    body: '{}',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    signal: AbortSignal.timeout(10_000),
  });
  if (res.status !== 200) throw new Error(`check-in: ${res.status} ${await res.text()}`);
  return (await res.json()) as CheckinResponse;
}

/** Uploads `delta` for an assignment (idempotency key = the assignment id); throws on non-200. */
export async function uploadUpdate(
  url: string,
  token: string,
  assignment: Train,
  delta: Float32Array,
  numExamples = 1,
): Promise<UpdateResponse> {
  const { status, text } = await postUpdate(url, token, assignment, delta, numExamples);
  if (status !== 200) throw new Error(`upload: ${status} ${text}`);
  return JSON.parse(text) as UpdateResponse;
}

/** Uploads `delta` for an assignment and returns the raw answer (status and body text). */
export async function postUpdate(
  url: string,
  token: string,
  assignment: Train,
  delta: Float32Array,
  numExamples = 1,
): Promise<{ readonly status: number; readonly text: string }> {
  const body = encodeFrame(
    FRAME_KIND_UPDATE,
    {
      taskId: assignment.taskId,
      assignmentId: assignment.assignmentId,
      baseVersion: assignment.version,
      numExamples,
    },
    delta,
  );
  const res = await fetch(`${url}/v1/tasks/${assignment.taskId}/updates`, {
    method: 'POST',
    body: body as Uint8Array<ArrayBuffer>,
    headers: {
      authorization: `Bearer ${token}`,
      'content-type': BINARY_CONTENT_TYPE,
      'idempotency-key': assignment.assignmentId,
    },
    signal: AbortSignal.timeout(10_000),
  });
  return { status: res.status, text: await res.text() };
}

/** The first task's entry in /v1/status (asserts there is one). */
export async function taskStatus(url: string): Promise<StatusResponse['tasks'][number]> {
  const s = (await (await fetch(`${url}/v1/status`)).json()) as StatusResponse;
  const task = s.tasks[0];
  assert.ok(task !== undefined, 'no task in /v1/status');
  return task;
}
