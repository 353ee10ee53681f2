/**
 * Keeps `docs/errors.md` and the error catalogue in step: one section per code, in
 * catalogue order, with the code's type, status and title; and no section for a code
 * the catalogue does not have.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ERROR_CATALOGUE, ERROR_CODES, isErrorCode, problemType, type ErrorCode } from '@flowgate/contracts';

const DOC_PATH = new URL('../../../../docs/errors.md', import.meta.url);
const doc = readFileSync(DOC_PATH, 'utf8');

/** The `## FLOWGATE_ERR_…` sections of the document, each with its body up to the next heading. */
function sections(markdown: string): Map<string, string> {
  const found = new Map<string, string>();
  const parts = markdown.split(/^## /m).slice(1);
  for (const part of parts) {
    const newline = part.indexOf('\n');
    const heading = (newline === -1 ? part : part.slice(0, newline)).trim();
    found.set(heading, newline === -1 ? '' : part.slice(newline + 1));
  }
  return found;
}

function field(body: string, name: string): string | undefined {
  const match = new RegExp(`^- ${name}: (.+)$`, 'm').exec(body);
  return match?.[1]?.trim();
}

const docSections = sections(doc);

describe('docs/errors.md', () => {
  it('has one section per catalogue code, in catalogue order', () => {
    const codes = [...docSections.keys()].filter((h) => h.startsWith('FLOWGATE_ERR_'));
    expect(codes).toEqual(ERROR_CODES);
  });

  it('has no section for a code the catalogue does not have', () => {
    const unknown = [...docSections.keys()].filter((heading) => !isErrorCode(heading));
    expect(unknown).toEqual([]);
  });

  it('names no code in its text that the catalogue does not have', () => {
    const mentioned = new Set(doc.match(/FLOWGATE_ERR_[A-Z0-9_]*[A-Z0-9]/g) ?? []);
    expect([...mentioned].filter((code) => !isErrorCode(code))).toEqual([]);
  });

  it.each(ERROR_CODES)('documents the type, status and title of %s', (code: ErrorCode) => {
    const body = docSections.get(code);
    expect(docSections.has(code)).toBe(true);
    const spec = ERROR_CATALOGUE[code];
    expect(field(body!, 'type')).toBe(`\`${problemType(code)}\``);
    expect(field(body!, 'status')).toBe(String(spec.status));
    expect(field(body!, 'title')).toBe(spec.title);
  });

  it.each(ERROR_CODES)('explains when %s happens', (code: ErrorCode) => {
    const prose = (docSections.get(code) ?? '')
      .split('\n')
      .filter((line) => line.trim() !== '' && !line.startsWith('- '))
      .join(' ');
    expect(prose.length).toBeGreaterThan(40);
  });
});

describe('the error catalogue', () => {
  it('gives every code its own problem type', () => {
    const types = ERROR_CODES.map(problemType);
    expect(new Set(types).size).toBe(types.length);
  });

  it('derives each problem type from its code', () => {
    expect(problemType('FLOWGATE_ERR_AUTH_TOKEN_INVALID')).toBe('urn:flowgate:error:auth-token-invalid');
    for (const code of ERROR_CODES) expect(problemType(code)).toMatch(/^urn:flowgate:error:[a-z0-9]+(-[a-z0-9]+)*$/);
  });

  it('names every code FLOWGATE_ERR_ in upper snake case', () => {
    for (const code of ERROR_CODES) expect(code).toMatch(/^FLOWGATE_ERR_[A-Z0-9]+(_[A-Z0-9]+)*$/);
  });

  it('gives every code an HTTP error status and a title', () => {
    const bad = ERROR_CODES.filter((code) => {
      const spec = ERROR_CATALOGUE[code];
      return !Number.isInteger(spec.status) || spec.status < 400 || spec.status >= 600 || spec.title.trim() === '';
    });
    expect(bad).toEqual([]);
  });

  it('files caller errors under 4xx and the rest under 5xx, except the start-time config error', () => {
    const misfiled = ERROR_CODES.filter((code) => {
      const spec = ERROR_CATALOGUE[code];
      return code !== 'FLOWGATE_ERR_CONFIG_INVALID' && (spec.family === 'user') !== spec.status < 500;
    });
    expect(misfiled).toEqual([]);
  });
});
