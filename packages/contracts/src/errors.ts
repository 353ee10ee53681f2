/**
 * The one catalogue of Flowgate error codes (STYLE.md practice 3, after Fastify's
 * `FST_ERR_*`). Every HTTP error Flowgate answers carries one of these codes in an
 * RFC 9457 problem document. `docs/errors.md` lists the same codes; a test keeps the
 * two in step.
 *
 * Families:
 * - `user`: the caller can fix it (4xx). Logged at info.
 * - `operational`: transient, worth retrying (503, 504...). Logged at warn.
 * - `unexpected`: a bug. Logged at error.
 *
 * `title` is the safe public message: it never contains tokens, secrets or keys.
 * `oauthError` is the RFC 6749 §5.2 / RFC 6750 §3.1 error code that OAuth clients read
 * from the `error` member, for errors answered by the OAuth endpoints.
 */

export type ErrorFamily = 'user' | 'operational' | 'unexpected';

export interface ErrorSpec {
  readonly status: number;
  readonly title: string;
  readonly family: ErrorFamily;
  readonly oauthError?: string;
}

export const ERROR_CATALOGUE = {
  // --- Requests -------------------------------------------------------------------
  FLOWGATE_ERR_REQUEST_INVALID: {
    status: 400,
    title: 'The request is not valid.',
    family: 'user',
  },
  FLOWGATE_ERR_REQUEST_MALFORMED_BODY: {
    status: 400,
    title: 'The request body could not be parsed.',
    family: 'user',
  },
  FLOWGATE_ERR_REQUEST_UNSUPPORTED_MEDIA_TYPE: {
    status: 415,
    title: 'The request body has a content type this endpoint does not accept.',
    family: 'user',
  },
  FLOWGATE_ERR_REQUEST_TOO_LARGE: {
    status: 413,
    title: 'The request body is too large.',
    family: 'user',
  },
  FLOWGATE_ERR_REQUEST_ROUTE_NOT_FOUND: {
    status: 404,
    title: 'There is nothing at this address.',
    family: 'user',
  },
  FLOWGATE_ERR_REQUEST_METHOD_NOT_ALLOWED: {
    status: 405,
    title: 'This method is not allowed here.',
    family: 'user',
  },
  FLOWGATE_ERR_RESOURCE_NOT_FOUND: {
    status: 404,
    title: 'The resource does not exist.',
    family: 'user',
  },
  FLOWGATE_ERR_RESOURCE_CONFLICT: {
    status: 409,
    title: 'The resource conflicts with one that already exists.',
    family: 'user',
  },

  // --- Authentication and authorisation of API callers -----------------------------
  FLOWGATE_ERR_AUTH_TOKEN_MISSING: {
    status: 401,
    title: 'An access token is required.',
    family: 'user',
    oauthError: 'invalid_request',
  },
  FLOWGATE_ERR_AUTH_TOKEN_INVALID: {
    status: 401,
    title: 'The access token is not valid.',
    family: 'user',
    oauthError: 'invalid_token',
  },
  FLOWGATE_ERR_AUTH_TOKEN_EXPIRED: {
    status: 401,
    title: 'The access token has expired.',
    family: 'user',
    oauthError: 'invalid_token',
  },
  FLOWGATE_ERR_AUTH_TOKEN_REVOKED: {
    status: 401,
    title: 'The access token has been revoked.',
    family: 'user',
    oauthError: 'invalid_token',
  },
  FLOWGATE_ERR_AUTH_API_KEY_INVALID: {
    status: 401,
    title: 'The API key is not valid.',
    family: 'user',
  },
  FLOWGATE_ERR_AUTH_INSUFFICIENT_SCOPE: {
    status: 403,
    title: 'The access token does not grant the scope this request needs.',
    family: 'user',
    oauthError: 'insufficient_scope',
  },
  FLOWGATE_ERR_AUTH_THROTTLED: {
    status: 429,
    title: 'Too many failed attempts; try again later.',
    family: 'user',
    oauthError: 'invalid_client',
  },

  // --- OAuth 2 endpoints (RFC 6749 §5.2, RFC 7009, RFC 8693) ---------------------------
  FLOWGATE_ERR_OAUTH_INVALID_REQUEST: {
    status: 400,
    title: 'The OAuth request is missing a parameter or has a bad one.',
    family: 'user',
    oauthError: 'invalid_request',
  },
  FLOWGATE_ERR_OAUTH_INVALID_CLIENT: {
    status: 401,
    title: 'Client authentication failed.',
    family: 'user',
    oauthError: 'invalid_client',
  },
  FLOWGATE_ERR_OAUTH_INVALID_GRANT: {
    status: 400,
    title: 'The grant is not valid, has expired or was revoked.',
    family: 'user',
    oauthError: 'invalid_grant',
  },
  FLOWGATE_ERR_OAUTH_UNAUTHORIZED_CLIENT: {
    status: 400,
    title: 'This client may not use this grant type.',
    family: 'user',
    oauthError: 'unauthorized_client',
  },
  FLOWGATE_ERR_OAUTH_UNSUPPORTED_GRANT_TYPE: {
    status: 400,
    title: 'The grant type is not supported.',
    family: 'user',
    oauthError: 'unsupported_grant_type',
  },
  FLOWGATE_ERR_OAUTH_INVALID_SCOPE: {
    status: 400,
    title: 'The requested scope is not valid or exceeds what may be granted.',
    family: 'user',
    oauthError: 'invalid_scope',
  },
  FLOWGATE_ERR_OAUTH_UNSUPPORTED_TOKEN_TYPE: {
    status: 400,
    title: 'The token type is not supported.',
    family: 'user',
    oauthError: 'unsupported_token_type',
  },
  FLOWGATE_ERR_OAUTH_LOGIN_FAILED: {
    status: 401,
    title: 'The tenant, user name or password is wrong.',
    family: 'user',
    oauthError: 'access_denied',
  },

  // --- IAM administration -----------------------------------------------------------
  FLOWGATE_ERR_IAM_SCOPE_NOT_GRANTABLE: {
    status: 403,
    title: 'You may only grant scopes that you hold yourself.',
    family: 'user',
  },
  FLOWGATE_ERR_IAM_ROLE_NOT_GRANTABLE: {
    status: 403,
    title: 'You may only grant or change roles up to your own.',
    family: 'user',
  },
  FLOWGATE_ERR_IAM_LAST_OWNER: {
    status: 409,
    title: 'A tenant must keep at least one owner.',
    family: 'user',
  },

  // --- Event bus -----------------------------------------------------------------
  FLOWGATE_ERR_BUS_INVALID_TOPIC: {
    status: 400,
    title: 'The topic name or topic pattern is not valid.',
    family: 'user',
  },
  FLOWGATE_ERR_BUS_RESERVED_TOPIC: {
    status: 400,
    title: 'This topic belongs to Flowgate and cannot be published to.',
    family: 'user',
  },
  FLOWGATE_ERR_BUS_SCHEMA_MISMATCH: {
    status: 422,
    title: "The event does not match its topic's schema.",
    family: 'user',
  },
  FLOWGATE_ERR_BUS_GROUP_CONFLICT: {
    status: 409,
    title: 'The consumer group already exists with another topic filter.',
    family: 'user',
  },
  FLOWGATE_ERR_BUS_QUOTA_EXCEEDED: {
    status: 429,
    title: "The tenant's event quota is used up; retry later.",
    family: 'user',
  },
  FLOWGATE_ERR_BUS_UNAVAILABLE: {
    status: 503,
    title: 'The event bus is unavailable; retry shortly.',
    family: 'operational',
  },

  // --- Secrets -------------------------------------------------------------------
  FLOWGATE_ERR_SECRETS_MASTER_KEY: {
    status: 500,
    title: 'The master key cannot open the secrets of this database.',
    family: 'operational',
  },
  FLOWGATE_ERR_SECRETS_UNREADABLE: {
    status: 500,
    title: 'A stored secret could not be decrypted.',
    family: 'unexpected',
  },

  // --- Outbound requests -----------------------------------------------------------
  FLOWGATE_ERR_OUTBOUND_REFUSED: {
    status: 422,
    title: 'Flowgate does not connect to that address.',
    family: 'user',
  },
  FLOWGATE_ERR_OUTBOUND_FAILED: {
    status: 502,
    title: 'A remote service could not be reached or answered badly.',
    family: 'operational',
  },

  // --- API gateway -------------------------------------------------------------------
  FLOWGATE_ERR_GATEWAY_CONFIG_INVALID: {
    status: 400,
    title: 'The gateway configuration is not valid.',
    family: 'user',
  },
  FLOWGATE_ERR_GATEWAY_RESERVED_PATH: {
    status: 400,
    title: "A gateway route may not serve one of Flowgate's own paths.",
    family: 'user',
  },
  FLOWGATE_ERR_GATEWAY_RATE_LIMITED: {
    status: 429,
    title: 'Too many requests; retry after the time given.',
    family: 'user',
  },
  FLOWGATE_ERR_GATEWAY_IP_REFUSED: {
    status: 403,
    title: 'Requests from this address are not allowed here.',
    family: 'user',
  },
  FLOWGATE_ERR_GATEWAY_CORS_REFUSED: {
    status: 403,
    title: 'This origin may not call this route from a browser.',
    family: 'user',
  },
  FLOWGATE_ERR_GATEWAY_UPSTREAM_UNAVAILABLE: {
    status: 502,
    title: 'The upstream service could not be reached.',
    family: 'operational',
  },
  FLOWGATE_ERR_GATEWAY_UPSTREAM_CREDENTIALS: {
    status: 502,
    title: "The gateway could not obtain the upstream service's credentials.",
    family: 'operational',
  },
  FLOWGATE_ERR_GATEWAY_NO_HEALTHY_UPSTREAM: {
    status: 503,
    title: 'No healthy target of the upstream service is available; retry shortly.',
    family: 'operational',
  },
  FLOWGATE_ERR_GATEWAY_UPSTREAM_TIMEOUT: {
    status: 504,
    title: 'The upstream service did not answer in time.',
    family: 'operational',
  },

  // --- Flows ---------------------------------------------------------------------------
  FLOWGATE_ERR_FLOW_INVALID: {
    status: 400,
    title: 'The flow definition is not valid.',
    family: 'user',
  },
  FLOWGATE_ERR_FLOW_STATUS_CONFLICT: {
    status: 409,
    title: "The flow's current status does not allow this.",
    family: 'user',
  },
  FLOWGATE_ERR_FLOW_INPUT_INVALID: {
    status: 422,
    title: "The input does not match the flow's input schema.",
    family: 'user',
  },
  FLOWGATE_ERR_WEBHOOK_SIGNATURE: {
    status: 401,
    title: 'The webhook signature is missing, wrong, too old or was used before.',
    family: 'user',
  },
  FLOWGATE_ERR_WEBHOOK_TIMEOUT: {
    status: 504,
    title: 'The flow did not answer in time; the execution goes on.',
    family: 'operational',
  },
  FLOWGATE_ERR_EXECUTION_STATUS_CONFLICT: {
    status: 409,
    title: "The execution's current status does not allow this.",
    family: 'user',
  },

  // --- Configuration (reported at start, never over HTTP) ----------------------------
  FLOWGATE_ERR_CONFIG_INVALID: {
    status: 500,
    title: 'The configuration is not valid.',
    family: 'user',
  },

  // --- Server ------------------------------------------------------------------------
  FLOWGATE_ERR_SERVER_NOT_READY: {
    status: 503,
    title: 'The server is not ready to serve requests.',
    family: 'operational',
  },
  FLOWGATE_ERR_SERVER_STORE_UNAVAILABLE: {
    status: 503,
    title: 'The data store is unavailable; retry shortly.',
    family: 'operational',
  },
  FLOWGATE_ERR_SERVER_INTERNAL: {
    status: 500,
    title: 'Something went wrong on our side.',
    family: 'unexpected',
  },
} as const satisfies Record<string, ErrorSpec>;

/** A stable Flowgate error code; a `switch` over it narrows. */
export type ErrorCode = keyof typeof ERROR_CATALOGUE;

/** Every code in the catalogue, in catalogue order. */
export const ERROR_CODES = Object.keys(ERROR_CATALOGUE) as ErrorCode[];

/** Looks up a code's specification. */
export function errorSpec(code: ErrorCode): ErrorSpec {
  return ERROR_CATALOGUE[code];
}

/**
 * The RFC 9457 `type` URI of a code: a URN, stable across releases and deployments,
 * e.g. `FLOWGATE_ERR_AUTH_TOKEN_INVALID` → `urn:flowgate:error:auth-token-invalid`.
 */
export function problemType(code: ErrorCode): string {
  return `urn:flowgate:error:${code.slice('FLOWGATE_ERR_'.length).toLowerCase().replaceAll('_', '-')}`;
}

/** Whether a string is a catalogue code. */
export function isErrorCode(value: string): value is ErrorCode {
  return Object.hasOwn(ERROR_CATALOGUE, value);
}
