import { Cron } from 'croner';

/** A cron expression that does not parse: what is wrong, and where (1-based character). */
export interface CronProblem {
  readonly message: string;
  readonly position: number;
}

const FIELD_NAMES_5 = ['minute', 'hour', 'day of month', 'month', 'day of week'];
const FIELD_NAMES_6 = ['second', ...FIELD_NAMES_5];

/** Whether `zone` is an IANA time zone this Node.js knows. */
export function isTimeZone(zone: string): boolean {
  try {
    new Intl.DateTimeFormat('en', { timeZone: zone });
    return true;
  } catch {
    return false;
  }
}

function schedule(expression: string, timezone: string): Cron {
  return new Cron(expression, { timezone, paused: true, mode: 'auto' });
}

/**
 * Checks a cron expression (five fields, or six with seconds first). When it does not
 * parse, the problem names the field and its position, found by parsing each field alone
 * with the others set to `*`: croner's own message does not say where.
 */
export function cronProblem(expression: string, timezone = 'UTC'): CronProblem | undefined {
  const trimmed = expression.trim();
  const fields = trimmed.split(/\s+/);
  if (fields.length !== 5 && fields.length !== 6) {
    return { message: `a cron expression has 5 fields (minute hour day month weekday) or 6 (seconds first); this one has ${fields.length}`, position: 1 };
  }
  try {
    const next = schedule(trimmed, timezone).nextRun();
    if (!next) return { message: 'the expression never fires (no date matches it)', position: 1 };
    return undefined;
  } catch (error) {
    const names = fields.length === 6 ? FIELD_NAMES_6 : FIELD_NAMES_5;
    let offset = expression.indexOf(fields[0]!);
    for (const [index, field] of fields.entries()) {
      offset = expression.indexOf(field, offset);
      const alone = fields.map((f, i) => (i === index ? f : '*')).join(' ');
      try {
        schedule(alone, 'UTC');
      } catch (fieldError) {
        return { message: `the ${names[index]} field "${field}" is not valid: ${clean(fieldError)}`, position: offset + 1 };
      }
      offset += field.length;
    }
    return { message: clean(error), position: 1 };
  }
}

function clean(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).replace(/^CronPattern:\s*/, '');
}

/** Parsed schedules by expression and zone: many flows share a few expressions, and parsing costs more than computing. */
const parsed = new Map<string, Cron>();
const MAX_PARSED = 10_000;

/**
 * The first time strictly after `after` (epoch ms) that the expression fires, or null when
 * it never will again. UTC runs as a fixed offset: croner's time-zone path formats dates
 * through Intl, several times slower.
 */
export function nextFiring(expression: string, timezone: string, after: number): number | null {
  const key = `${timezone}\n${expression}`;
  let cron = parsed.get(key);
  if (!cron) {
    const utc = timezone === 'UTC' || timezone === 'Etc/UTC';
    cron = utc ? new Cron(expression.trim(), { utcOffset: 0, paused: true, mode: 'auto' }) : schedule(expression.trim(), timezone);
    if (parsed.size >= MAX_PARSED) parsed.clear();
    parsed.set(key, cron);
  }
  const next = cron.nextRun(new Date(after));
  return next ? next.getTime() : null;
}
