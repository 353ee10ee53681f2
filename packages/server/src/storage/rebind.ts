import type { CompiledQuery } from 'kysely';

/**
 * A query compiled once for a hot path, run with a new value: `compiled` was built with
 * `stand` in the value's place, and every parameter equal to `stand` becomes `value`. The
 * SQL text stays the same, so the store's statement cache keeps serving it.
 */
export function rebind<R>(compiled: CompiledQuery<R>, stand: unknown, value: unknown): CompiledQuery<R> {
  return { ...compiled, parameters: compiled.parameters.map((p) => (p === stand ? value : p)) };
}
