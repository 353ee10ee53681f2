import type { ErrorObject } from 'ajv';

/** A problem in a document, with its place written as a reader would (`routes[2].policies.auth`). */
export interface DocumentProblem {
  readonly path: string;
  readonly message: string;
}

/** `/routes/2/policies` → `routes[2].policies`. */
export function pointerToField(instancePath: string): string {
  return instancePath
    .split('/')
    .slice(1)
    .map((part) => (/^\d+$/.test(part) ? `[${part}]` : `.${part}`))
    .join('')
    .replace(/^\./, '');
}

/**
 * Ajv's shape errors as document problems, each once: an unknown property is named in the
 * path ("is not a known property"), the document itself is `(document)`. Used where a whole
 * document (a gateway configuration, a flow definition) is checked before its meaning is.
 */
export function shapeProblems(errors: readonly ErrorObject[] | null | undefined): DocumentProblem[] {
  const seen = new Set<string>();
  const problems: DocumentProblem[] = [];
  for (const e of errors ?? []) {
    const extra = (e.params as { additionalProperty?: unknown }).additionalProperty;
    const at = pointerToField(e.instancePath) + (typeof extra === 'string' ? `.${extra}` : '');
    const problem = { path: at.replace(/^\./, '') || '(document)', message: typeof extra === 'string' ? 'is not a known property' : (e.message ?? 'is invalid') };
    const key = `${problem.path}\n${problem.message}`;
    if (!seen.has(key)) {
      seen.add(key);
      problems.push(problem);
    }
  }
  return problems;
}
