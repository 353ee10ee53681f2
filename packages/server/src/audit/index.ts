/** The audit port. Issue 6 replaces the log-only recorder with the tamper-evident log. */
export { type AuditEvent, type AuditRecorder, createLogAuditRecorder, MemoryAuditRecorder } from './audit-recorder.js';
