import { isSystemTopic, isTopicName } from '@flowgate/contracts';
import { FlowgateError } from '../errors/index.js';

/**
 * Which topics a subscription reads: one topic, a glob, or a regular expression.
 *
 * - glob: `*` stands for exactly one segment, `**` for one or more (`audit.*` matches
 *   `audit.login` but not `audit.iam.login`; `audit.**` matches both);
 * - regex: matched against the whole topic name (`.*datapoint.*`).
 *
 * Like dot-files in a shell, Flowgate's own topics (first segment starting with `_`, such
 * as dead letters) match only a filter whose first character is `_`.
 */
export interface TopicFilter {
  readonly kind: 'topic' | 'glob' | 'regex';
  readonly source: string;
  matches(topic: string): boolean;
}

/** The longest glob or regular expression accepted. */
const MAX_FILTER_LENGTH = 200;

/** A filter for exactly one topic. */
export function topicFilter(topic: string): TopicFilter {
  if (!isTopicName(topic)) throw invalid(`"${topic}" is not a topic name: use lower-case dot-separated segments such as orders.created.`);
  return { kind: 'topic', source: topic, matches: (t) => t === topic };
}

/** A glob filter (`audit.*`, `sensors.**`). */
export function globFilter(glob: string): TopicFilter {
  const segments = glob.split('.');
  if (glob.length > MAX_FILTER_LENGTH || segments.some((s) => s === '' || !(s === '*' || s === '**' || /^[a-z0-9_][a-z0-9_-]*$/.test(s)))) {
    throw invalid(`"${glob}" is not a topic glob: segments are names, * (one segment) or ** (one or more).`);
  }
  const body = segments.map((s) => (s === '*' ? '[^.]+' : s === '**' ? '[^.]+(?:\\.[^.]+)*' : escapeRegex(s))).join('\\.');
  const pattern = new RegExp(`^${body}$`);
  const system = glob.startsWith('_');
  return { kind: 'glob', source: glob, matches: (t) => system === isSystemTopic(t) && pattern.test(t) };
}

/** A regular-expression filter, matched against the whole topic name. */
export function regexFilter(source: string): TopicFilter {
  if (source.length === 0 || source.length > MAX_FILTER_LENGTH) throw invalid(`A topic regular expression must have 1 to ${MAX_FILTER_LENGTH} characters.`);
  // Nested quantifiers such as (a+)+ can backtrack for seconds on a short name; topic
  // names never need them, so they are refused rather than risked (ReDoS).
  if (/\([^)]*[+*}][^)]*\)\s*[+*{]/.test(source)) throw invalid(`"${source}" nests quantifiers (like (a+)+); write it without a repeated group.`);
  let pattern: RegExp;
  try {
    pattern = new RegExp(`^(?:${source})$`);
  } catch (cause) {
    throw invalid(`"${source}" is not a valid regular expression: ${(cause as Error).message}`);
  }
  const system = source.startsWith('_');
  return { kind: 'regex', source, matches: (t) => system === isSystemTopic(t) && pattern.test(t) };
}

/**
 * Reads the short form the CLI and query strings use: `/…/` is a regular expression, a
 * name with `*` a glob, anything else one topic.
 */
export function parseTopicFilter(text: string): TopicFilter {
  if (text.length > 2 && text.startsWith('/') && text.endsWith('/')) return regexFilter(text.slice(1, -1));
  if (text.includes('*')) return globFilter(text);
  return topicFilter(text);
}

/** The short form of a filter, as {@link parseTopicFilter} reads it back. */
export function formatTopicFilter(filter: TopicFilter): string {
  return filter.kind === 'regex' ? `/${filter.source}/` : filter.source;
}

function escapeRegex(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\-]/g, '\\$&');
}

function invalid(detail: string): FlowgateError {
  return new FlowgateError('FLOWGATE_ERR_BUS_INVALID_TOPIC', detail);
}
