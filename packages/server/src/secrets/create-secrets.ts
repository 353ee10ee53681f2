import type { FlowgateConfig } from '../config/index.js';
import type { AuditRecorder, Clock } from '../kernel/index.js';
import type { Logger } from '../observability/index.js';
import type { OutboundClient } from '../outbound/index.js';
import type { Store } from '../storage/index.js';
import { DataKeys } from './data-keys.js';
import { createTextSealer, type TextSealer } from './key-sealer.js';
import { MasterKeyRing } from './master-keys.js';
import { OAuth2Tokens } from './oauth2-tokens.js';
import { SecretStore } from './secret-store.js';

export interface Secrets {
  readonly store: SecretStore;
  /** Seals Flowgate's own secrets at rest (the IAM's private signing keys). */
  readonly sealer: TextSealer;
  readonly oauth2: OAuth2Tokens;
  readonly keys: DataKeys;
  readonly ring: MasterKeyRing;
}

export interface CreateSecretsOptions {
  readonly config: FlowgateConfig['secrets'];
  readonly dataDir: string;
  readonly store: Store;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly audit: AuditRecorder;
  readonly outbound: OutboundClient;
}

/**
 * Loads the master keys (creating the key file on first start of the embedded default)
 * and checks that they open this database's data keys: a wrong key stops the start.
 */
export async function createSecrets(options: CreateSecretsOptions): Promise<Secrets> {
  // Only the embedded default makes its own key: instances sharing a store must share it.
  const ring = MasterKeyRing.load(
    { masterKey: options.config.masterKey, masterKeyFile: options.config.masterKeyFile, dataDir: options.dataDir },
    (file) => options.logger.warn({ file }, 'generated a new master key file (mode 0600); back it up: without it the secrets in this database cannot be read'),
    { mayCreate: !options.store.capabilities.sharedAcrossProcesses },
  );
  const keys = new DataKeys(options.store, ring, options.clock);
  await keys.checkMasterKeys();
  const store = new SecretStore(options.store, keys, options.clock);
  return { store, sealer: createTextSealer(keys), oauth2: new OAuth2Tokens(options.store, store, keys, options.outbound, options.clock, options.audit), keys, ring };
}
