import { createHash } from 'node:crypto';
import type { GroupRef } from '../../bus-backend.js';

/**
 * How Flowgate's bus maps onto JetStream names. Everything lives under one prefix
 * (default `fg`), so several installations, or tests, can share a NATS server:
 *
 * - events of a tenant topic: subject `<prefix>.ev.<tenant>.<topic>`, one stream each;
 * - group records: subject `<prefix>.groups.<scope>.<name>` in the stream `<PREFIX>_GROUPS`.
 *
 * Subjects can hold tenants and topics as they are (tenant ids are `[a-z0-9-]`, topics
 * dot-separated `[a-z0-9_-]` segments, both valid subject tokens). Stream and consumer
 * names cannot contain dots, so they are derived, with a hash where that keeps the
 * mapping injective.
 */

/** Prefixes are one subject token, also usable in a stream name. */
const PREFIX_PATTERN = /^[a-z0-9][a-z0-9_-]{0,31}$/;
/** Stream names stay short: they name files on the server. */
const READABLE_MAX = 64;

/** One tenant topic and the stream that stores it. */
export interface TopicStream {
  readonly stream: string;
  readonly subject: string;
  readonly tenant: string;
  readonly topic: string;
}

export function isValidPrefix(prefix: string): boolean {
  return PREFIX_PATTERN.test(prefix);
}

/** The names of one installation (one prefix). */
export class BusNames {
  readonly upper: string;

  constructor(readonly prefix: string) {
    this.upper = prefix.toUpperCase();
  }

  /** Every subject of this installation, for clean-up. */
  get all(): string {
    return `${this.prefix}.>`;
  }

  eventSubject(tenant: string, topic: string): string {
    return `${this.prefix}.ev.${tenant}.${topic}`;
  }

  /** The subjects of every topic stream, of one tenant or of all. */
  eventWildcard(tenant: string | null): string {
    return tenant === null ? `${this.prefix}.ev.>` : `${this.prefix}.ev.${tenant}.>`;
  }

  /**
   * `<PREFIX>_EV_<tenant>__<topic with _ for .>_<hash>`: readable in `nats stream ls`, and
   * the hash of the exact (tenant, topic) pair keeps `a.b` and `a_b` apart.
   */
  streamName(tenant: string, topic: string): string {
    const readable = `${tenant}__${topic.replace(/\./g, '_')}`.slice(0, READABLE_MAX);
    const hash = createHash('sha256').update(`${tenant}\u0000${topic}`).digest('hex').slice(0, 12);
    return `${this.upper}_EV_${readable}_${hash}`;
  }

  topicStream(tenant: string, topic: string): TopicStream {
    return { stream: this.streamName(tenant, topic), subject: this.eventSubject(tenant, topic), tenant, topic };
  }

  /** Reads a topic stream back from its one subject; undefined for anything else. */
  parseEventSubject(stream: string, subject: string): TopicStream | undefined {
    const head = `${this.prefix}.ev.`;
    if (!subject.startsWith(head)) return undefined;
    const rest = subject.slice(head.length);
    const dot = rest.indexOf('.');
    if (dot <= 0 || dot === rest.length - 1) return undefined;
    return { stream, subject, tenant: rest.slice(0, dot), topic: rest.slice(dot + 1) };
  }

  get groupsStream(): string {
    return `${this.upper}_GROUPS`;
  }

  get groupsWildcard(): string {
    return `${this.prefix}.groups.>`;
  }

  /** Tenant ids never start with `_`, so `_platform` cannot collide with one. */
  groupSubject(ref: GroupRef): string {
    return `${this.prefix}.groups.${ref.tenant ?? '_platform'}.${ref.name}`;
  }

  /** The group records of one tenant (its own groups, not platform ones). */
  groupsOfTenant(tenant: string): string {
    return `${this.prefix}.groups.${tenant}.*`;
  }
}

/**
 * The durable consumer of a group on a topic stream. A stream holds one tenant's topic,
 * so only that tenant's groups and platform groups meet on it; `g_` and `p_` keep them
 * apart. Group names are `[a-z0-9][a-z0-9_-]*`, already valid consumer names.
 */
export function consumerName(ref: GroupRef): string {
  return `${ref.tenant === null ? 'p' : 'g'}_${ref.name}`;
}

/** A NATS URL (or comma-separated list) without user info, for messages and logs. */
export function redactUrl(url: string): string {
  return url.replace(/\/\/[^@/,]*@/g, '//').replace(/(^|,)\s*[^@/,]*@/g, '$1');
}
