/** Assertions on RFC 9457 problem documents, shared by the security and input tests. */
import { expect } from 'vitest';
import { problemType, type ErrorCode } from '@flowgate/contracts';
import type { JsonResponse } from './http.js';

/**
 * Asserts that an answer is a Flowgate problem document: `application/problem+json`,
 * the given status and code, the code's `type` URN, a `title` and `detail`, and a `traceId`
 * equal to the `x-trace-id` header of the same answer.
 */
export function expectProblem(res: JsonResponse, status: number, code: ErrorCode | readonly ErrorCode[]): void {
  const codes: readonly ErrorCode[] = typeof code === 'string' ? [code] : code;
  const traceId = res.headers.get('x-trace-id');
  // One object, so a failure shows the whole answer.
  expect({ status: res.status, contentType: res.headers.get('content-type'), body: res.body ?? res.text }).toMatchObject({
    status,
    contentType: expect.stringMatching(/^application\/problem\+json\b/),
    body: {
      type: expect.stringMatching(/^urn:flowgate:error:[a-z0-9-]+$/),
      title: expect.stringMatching(/\S/),
      status,
      detail: expect.stringMatching(/\S/),
      code: expect.any(String),
      traceId,
    },
  });
  const body = res.body as { code: ErrorCode; type: string };
  expect(codes).toContain(body.code);
  expect(body.type).toBe(problemType(body.code));
  expect(traceId).toMatch(/^[0-9a-f]{32}$/);
}

/** Asserts a 401 for a refused bearer token: problem+json and an RFC 6750 `invalid_token` challenge. */
export function expectInvalidToken(res: JsonResponse, code: ErrorCode = 'FLOWGATE_ERR_AUTH_TOKEN_INVALID'): void {
  expectProblem(res, 401, code);
  expect(res.headers.get('www-authenticate')).toMatch(/^Bearer realm="flowgate", .*error="invalid_token"/);
}
