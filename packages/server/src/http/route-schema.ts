/** Pieces every route's OpenAPI schema repeats. */

/** The problem+json answers a route may give, by status: `...problemResponses(400, 404)`. */
export function problemResponses(...codes: number[]): Record<number, { $ref: string }> {
  return Object.fromEntries(codes.map((c) => [c, { $ref: 'Problem#' }]));
}

/** Marks a route as needing a bearer token: `{ ...bearerSecured, … }` in its schema. */
export const bearerSecured = { security: [{ bearer: [] }] };
