#!/usr/bin/env node
// Runs every bench/*.bench.mjs one after another (never in parallel, so they do
// not skew each other's timings), each in its own process with inherited stdio.
// Exits 1 if any bench crashed; slow results alone never fail a bench.
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';

const dir = import.meta.dirname;
const benches = readdirSync(dir).filter((f) => f.endsWith('.bench.mjs')).sort();
const failed = [];
for (const file of benches) {
  console.log(`\n== bench: ${file}`);
  const { status, signal, error } = spawnSync(process.execPath, [join(dir, file)], { stdio: 'inherit' });
  if (error || status !== 0) failed.push(`${file} (${error?.message ?? signal ?? `exit ${status}`})`);
}
if (failed.length > 0) {
  console.error(`\nbench: ${failed.length} of ${benches.length} failed: ${failed.join(', ')}`);
  process.exit(1);
}
console.log(`\nbench: ${benches.length} bench(es) done; results in bench/results/`);
