#!/usr/bin/env node
// Licence gate. Flowgate is Apache-2.0, so every dependency we install (runtime
// or dev) must carry a licence that allows it to be used alongside Apache-2.0.
// Reads package-lock.json (v3 `packages` map), falls back to each package's own
// package.json on disk, and exits 1 listing every package whose licence is
// missing or not on the allow-list. No dependencies, so it runs before anything else.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

// Permissive SPDX ids known to be compatible with Apache-2.0.
const ALLOWED = new Set([
  'MIT', 'MIT-0', 'ISC', 'BSD-2-Clause', 'BSD-3-Clause', '0BSD', 'Apache-2.0',
  'BlueOak-1.0.0', 'CC0-1.0', 'CC-BY-3.0', 'CC-BY-4.0', 'Python-2.0',
  'Unlicense', 'WTFPL', 'Zlib', 'BSD', 'Artistic-2.0',
]);
// MPL-2.0 is file-level copyleft: fine for build/test tools we run but never ship
// or modify (e.g. lightningcss under vitest), so it is allowed with a warning for
// dev-only packages. In a runtime dependency it fails.
const DEV_ONLY_WARN = new Set(['MPL-2.0']);
// Per-package exceptions for licence strings that are compatible but not valid
// SPDX ("Apache 2.0", "BSD*"...). Key "name@version", value the SPDX id it means,
// plus a comment saying where that was verified. Empty: the current lock needs none.
const EXCEPTIONS = {};

const root = join(import.meta.dirname, '..');
const lock = JSON.parse(readFileSync(join(root, 'package-lock.json'), 'utf8'));

// `license` may be a string or a legacy object; legacy `licenses` is an array
// (historically meaning "any of these").
function licenseOf(meta) {
  const norm = (l) => (typeof l === 'string' ? l : l?.type);
  if (meta.license) return norm(meta.license);
  if (Array.isArray(meta.licenses)) return meta.licenses.map(norm).filter(Boolean).join(' OR ') || undefined;
  return undefined;
}

// Tiny SPDX expression evaluator: OR = any side ok, AND = all sides ok, AND binds
// tighter, parentheses group, and "X WITH exception" is judged by X.
function isAllowed(expr, ok) {
  const toks = expr.replace(/[()]/g, ' $& ').trim().split(/\s+/);
  let i = 0;
  const factor = () => {
    if (toks[i] === '(') { i++; const v = orExpr(); i++; return v; }
    const id = toks[i++];
    if (toks[i] === 'WITH') i += 2;
    return ok(id);
  };
  const andExpr = () => { let v = factor(); while (toks[i] === 'AND') { i++; v = factor() && v; } return v; };
  const orExpr = () => { let v = andExpr(); while (toks[i] === 'OR') { i++; v = andExpr() || v; } return v; };
  return orExpr();
}

const failures = [];
const warnings = [];
const counts = {};
for (const [key, entry] of Object.entries(lock.packages)) {
  // Root ("") and workspace sources (packages/*) are ours; links point at them.
  if (!key.includes('node_modules/') || entry.link) continue;
  let meta = entry;
  if (!licenseOf(meta)) {
    try { meta = { ...JSON.parse(readFileSync(join(root, key, 'package.json'), 'utf8')), ...entry }; } catch { /* not on disk */ }
  }
  const name = entry.name ?? meta.name ?? key.slice(key.lastIndexOf('node_modules/') + 13);
  const id = `${name}@${entry.version ?? meta.version}`;
  const license = EXCEPTIONS[id] ?? licenseOf(meta);
  if (!license) { failures.push(`${id}: (no license)`); continue; }
  if (isAllowed(license, (l) => ALLOWED.has(l))) {
    counts[license] = (counts[license] ?? 0) + 1;
  } else if (entry.dev && isAllowed(license, (l) => ALLOWED.has(l) || DEV_ONLY_WARN.has(l))) {
    counts[license] = (counts[license] ?? 0) + 1;
    warnings.push(id);
  } else {
    failures.push(`${id}: ${license}${entry.dev ? '' : ' (runtime dependency)'}`);
  }
}

if (warnings.length > 0) {
  console.warn(`licenses: warning: ${warnings.length} dev-only package(s) under ${[...DEV_ONLY_WARN].join('/')}, allowed: ${warnings.join(', ')}`);
}
if (failures.length > 0) {
  console.error(`licenses: ${failures.length} package(s) not allowed for an Apache-2.0 project:`);
  for (const f of failures) console.error(`  ${f}`);
  process.exit(1);
}
const total = Object.values(counts).reduce((a, b) => a + b, 0);
const summary = Object.entries(counts).sort((a, b) => b[1] - a[1]).map(([l, n]) => `${l} ${n}`).join(', ');
console.log(`licenses: ${total} packages, all allowed (${summary})`);
