/**
 * The audit log: any part records an event (AuditRecorder); it travels on `audit.<action>`
 * and the audit service chains it, once, into its tenant's tamper-evident log.
 */
export { AuditLog, PLATFORM_SCOPE, GENESIS_HASH, recordHash, type AuditEnvelope, type AuditRecord, type AuditQuery, type CheckpointClaims, type CheckpointSigner } from './audit-log.js';
export { verifyChain, type VerifyReport, type ChainProblem } from './audit-verify.js';
export { AuditService, BusAuditRecorder, AUDIT_GROUP, auditPublishItem, type AuditServiceOptions } from './audit-service.js';
export { createCheckpointSigner, type SigningKeys } from './checkpoint-signer.js';
export { auditMigrations, type AuditTables } from './audit.migrations.js';
export { canonicalJson } from './canonical-json.js';
export { registerAuditRoutes } from './audit.routes.js';
