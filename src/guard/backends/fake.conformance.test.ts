import { FakeGuardBackend } from '../testing/fake-backend.ts';
import { runBackendConformance } from './conformance.ts';

runBackendConformance('fake (test double)', async () => new FakeGuardBackend());
runBackendConformance(
  'fake with batch path and vision',
  async () => new FakeGuardBackend({ batch: true, vision: true }),
  {
    variant: 'vision',
  },
);
