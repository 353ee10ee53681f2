import { API_SCOPES, isOidcScope, missingScopes, scopesGrant } from '@flowgate/contracts';
import type { ErrorCode } from '@flowgate/contracts';
import type { ActClaim, Principal } from './principal.js';

/** The party asking to act for the subject: the authenticated service account. */
export interface ExchangeActor {
  readonly sub: string;
  readonly clientId: string;
  readonly tenant: string;
  readonly scopes: readonly string[];
}

export interface ExchangeRequest {
  /** The verified subject token. */
  readonly subject: Principal;
  readonly actor: ExchangeActor;
  /** The verified actor token, when the request carried one (RFC 8693 §2.1). */
  readonly actorToken?: Principal | undefined;
  /** The scopes asked for; the subject's when absent. */
  readonly requestedScopes: readonly string[] | undefined;
  /** Lifetime asked for, in seconds. */
  readonly requestedTtl: number | undefined;
  readonly defaultTtl: number;
  /** Now, epoch seconds. */
  readonly now: number;
}

export type ExchangeDecision =
  | { readonly ok: true; readonly scopes: string[]; readonly ttl: number; readonly act: ActClaim }
  | { readonly ok: false; readonly code: ErrorCode; readonly detail: string };

const refuse = (code: ErrorCode, detail: string): ExchangeDecision => ({ ok: false, code, detail });

/**
 * Decides an RFC 8693 token exchange. Pure: the same inputs always give the same answer.
 *
 * The rules, each a refusal when broken:
 * - the actor must hold `tokens:exchange`;
 * - subject, actor (and actor token) must be in the same tenant;
 * - an actor token, when given, must stand for the authenticated actor;
 * - every requested scope must be implied by the subject's scopes (exchange narrows);
 * - the new token may live shorter than the subject token, never longer.
 *
 * The new token names the actor in `act`, nesting any earlier actor (§4.1).
 */
export function decideTokenExchange(req: ExchangeRequest): ExchangeDecision {
  const { subject, actor } = req;
  if (!scopesGrant(actor.scopes, API_SCOPES.tokenExchange)) {
    return refuse('FLOWGATE_ERR_OAUTH_UNAUTHORIZED_CLIENT', `This client needs the "${API_SCOPES.tokenExchange}" scope to exchange tokens.`);
  }
  if (subject.tenant !== actor.tenant) {
    return refuse('FLOWGATE_ERR_OAUTH_INVALID_GRANT', 'The subject token belongs to another tenant than this client.');
  }
  if (req.actorToken) {
    if (req.actorToken.tenant !== actor.tenant || req.actorToken.sub !== actor.sub) {
      return refuse('FLOWGATE_ERR_OAUTH_INVALID_REQUEST', 'The actor token must stand for the authenticated client.');
    }
  }
  const requested = (req.requestedScopes ?? subject.scopes).filter((s) => !isOidcScope(s));
  if (requested.length === 0) return refuse('FLOWGATE_ERR_OAUTH_INVALID_SCOPE', 'The exchanged token would carry no scope.');
  const widening = missingScopes(subject.scopes, requested);
  if (widening.length > 0) {
    return refuse('FLOWGATE_ERR_OAUTH_INVALID_SCOPE', `Token exchange may only narrow; the subject token does not grant: ${widening.join(' ')}.`);
  }
  const remaining = subject.exp - req.now;
  if (remaining <= 0) return refuse('FLOWGATE_ERR_OAUTH_INVALID_GRANT', 'The subject token has expired.');
  if (req.requestedTtl !== undefined) {
    if (!Number.isInteger(req.requestedTtl) || req.requestedTtl < 1) {
      return refuse('FLOWGATE_ERR_OAUTH_INVALID_REQUEST', 'expires_in must be a positive whole number of seconds.');
    }
    if (req.requestedTtl > remaining) {
      return refuse(
        'FLOWGATE_ERR_OAUTH_INVALID_REQUEST',
        `The exchanged token cannot outlive the subject token, which expires in ${remaining} s.`,
      );
    }
  }
  const ttl = Math.min(req.requestedTtl ?? req.defaultTtl, remaining);
  const act: ActClaim = subject.act
    ? { sub: actor.sub, client_id: actor.clientId, act: subject.act }
    : { sub: actor.sub, client_id: actor.clientId };
  return { ok: true, scopes: requested, ttl, act };
}
