/** Small primitives every feature shares: time, ids, random tokens. */
export { type Clock, systemClock, ManualClock, epochSeconds, isoTime } from './clock.js';
export { newId, pooledRandom, randomToken, sha256Hex, safeEqual } from './ids.js';
export { CoalescingRunner, type CoalescingRunnerOptions } from './coalescing-runner.js';
export { type AuditEvent, type AuditRecorder, MemoryAuditRecorder } from './audit-recorder.js';
export { SingleFlight } from './single-flight.js';
export { runPeriodically } from './periodic.js';
export { type Network, parseNetwork, addNetwork, listsAddress, networkList, clientNetwork } from './networks.js';
export { setBounded } from './bounded-map.js';
export { TurnBatch } from './turn-batch.js';
