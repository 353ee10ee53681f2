import { errorSpec, problemType, type Problem } from '@flowgate/contracts';
import type { FlowgateError } from './flowgate-error.js';

/** The media type of every Flowgate error answer (RFC 9457 §3). */
export const PROBLEM_CONTENT_TYPE = 'application/problem+json';

/**
 * Renders an error as an RFC 9457 problem document. OAuth endpoints' errors also carry
 * the RFC 6749 `error` / `error_description` members so standard OAuth clients read them.
 */
export function toProblem(error: FlowgateError, traceId: string, instance?: string): Problem {
  const spec = errorSpec(error.code);
  const problem: Problem = {
    ...error.extensions,
    type: problemType(error.code),
    title: spec.title,
    status: error.status,
    detail: error.detail,
    code: error.code,
    traceId,
  };
  if (instance !== undefined) problem.instance = instance;
  if (error.errors && error.errors.length > 0) problem.errors = [...error.errors];
  if (spec.oauthError !== undefined) {
    problem.error = spec.oauthError;
    problem.error_description = error.detail;
  }
  return problem;
}
