import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

/** This server's version, from its package.json (the same path from src/ and dist/). */
export const VERSION = (require('../package.json') as { version: string }).version;
