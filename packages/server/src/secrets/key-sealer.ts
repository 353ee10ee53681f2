import { FlowgateError } from '../errors/index.js';
import type { DataKeys } from './data-keys.js';
import { open, seal } from './envelope.js';

/** The data keys of what belongs to no tenant (the IAM's signing keys). */
export const PLATFORM_KEYS = '_platform';

/** Seals and opens text with the platform's data key: `<data key id>.<sealed>`. */
export interface TextSealer {
  seal(plain: string, context: string): Promise<string>;
  open(sealed: string, context: string): Promise<string>;
}

/**
 * Envelope encryption for Flowgate's own secrets at rest, such as the IAM's private
 * signing keys: sealed with the platform's data key, so the master key protects them
 * like every tenant secret (and a master-key rotation re-wraps them along).
 */
export function createTextSealer(keys: DataKeys): TextSealer {
  return {
    async seal(plain, context) {
      const key = await keys.active(PLATFORM_KEYS);
      return `${key.id}.${seal(key.key, Buffer.from(plain, 'utf8'), context)}`;
    },
    async open(sealed, context) {
      const dot = sealed.indexOf('.');
      if (dot < 0) throw new FlowgateError('FLOWGATE_ERR_SECRETS_UNREADABLE', 'A sealed value names no data key.');
      const key = await keys.byId(PLATFORM_KEYS, sealed.slice(0, dot));
      return open(key.key, sealed.slice(dot + 1), context, 'A platform secret').toString('utf8');
    },
  };
}
