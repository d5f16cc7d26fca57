import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FakeGuardBackend } from '../testing/fake-backend.ts';
import { GuardError } from '../types.ts';
import { createBackend, registerBackendFactory, unregisterBackendFactory } from './registry.ts';

describe('backend registry', () => {
  it('creates registered factories with the given options', async () => {
    let seen: unknown;
    registerBackendFactory('fake-test', async (o) => {
      seen = o;
      return new FakeGuardBackend();
    });
    try {
      const b = await createBackend('fake-test', { variant: '8b', endpoint: 'http://127.0.0.1:1' });
      assert.equal(b.name, 'fake');
      assert.deepEqual(seen, { variant: '8b', endpoint: 'http://127.0.0.1:1' });
    } finally {
      unregisterBackendFactory('fake-test');
    }
  });

  it('names unknown kinds in a typed error', async () => {
    await assert.rejects(
      createBackend('nope', { variant: '1b' }),
      (e) =>
        e instanceof GuardError && e.code === 'BACKEND_UNKNOWN' && /llama, openai, ollama/.test(e.message),
    );
  });
});
