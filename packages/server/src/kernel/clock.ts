/**
 * Time, injected. Security decisions and schedules take a {@link Clock} so tests can
 * freeze or move time instead of sleeping.
 */
export interface Clock {
  /** Milliseconds since the Unix epoch. */
  now(): number;
}

/** The wall clock. */
export const systemClock: Clock = { now: () => Date.now() };

/** A clock that moves only when told to; for tests. */
export class ManualClock implements Clock {
  constructor(private current: number = Date.UTC(2026, 0, 1)) {}
  now(): number {
    return this.current;
  }
  /** Moves time forward by `ms` milliseconds. */
  advance(ms: number): void {
    this.current += ms;
  }
  /** Sets the time. */
  set(ms: number): void {
    this.current = ms;
  }
}

/** Seconds since the epoch, as JWT `iat`/`exp` use (RFC 7519 §2 NumericDate). */
export function epochSeconds(clock: Clock): number {
  return Math.floor(clock.now() / 1000);
}

/** An ISO 8601 timestamp for API answers. */
export function isoTime(ms: number): string {
  return new Date(ms).toISOString();
}
