#!/usr/bin/env node
// Runs the TypeScript CLI directly through tsx's loader so that `orchard` never runs stale build output.
import { register } from 'tsx/esm/api';

register();
await import('../src/cli/main.ts');
