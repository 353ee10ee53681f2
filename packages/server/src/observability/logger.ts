import { pino, type DestinationStream, type Logger, type LevelWithSilent } from 'pino';

/**
 * Paths pino blanks out wherever they appear in a log record. Flowgate never logs a
 * request's headers or body on purpose; this is the second line of defence.
 */
export const REDACTED_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'res.headers["set-cookie"]',
  '*.authorization',
  '*.password',
  '*.client_secret',
  '*.clientSecret',
  '*.access_token',
  '*.refresh_token',
  '*.id_token',
  '*.subject_token',
  '*.actor_token',
  '*.token',
  '*.code_verifier',
  '*.secret',
  '*.private_jwk',
  '*.masterKey',
];

export interface LoggerOptions {
  level: LevelWithSilent;
  /** Where the JSON lines go; standard output when absent. */
  destination?: DestinationStream;
}

/** Creates the process's JSON logger (pino). Each request gets a child with its trace id. */
export function createLogger({ level, destination }: LoggerOptions): Logger {
  return pino(
    {
      level,
      base: { service: 'flowgate' },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
      formatters: { level: (label) => ({ level: label }) },
    },
    destination ?? pino.destination({ sync: false }),
  );
}

export type { Logger };
