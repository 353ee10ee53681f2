import { auditMigrations } from './audit/index.js';
import { busMigrations } from './bus/index.js';
import { flowsMigrations } from './flows/index.js';
import { gatewayMigrations } from './gateway/index.js';
import { iamMigrations } from './iam/index.js';
import { secretsMigrations } from './secrets/index.js';
import type { NamedMigration } from './storage/index.js';

/** Every feature's migrations; the store applies them in name order. */
export const ALL_MIGRATIONS: readonly NamedMigration[] = [...iamMigrations, ...busMigrations, ...secretsMigrations, ...auditMigrations, ...gatewayMigrations, ...flowsMigrations];
