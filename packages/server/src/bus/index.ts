/**
 * The event bus (issue 4): durable per-tenant topics, consumer groups, retries and dead
 * letters, on the embedded log in the state store or on NATS JetStream.
 */
export { EventBus, type EventBusOptions, type PublishItem, type PublishOptions, type SubscribeOptions, type DeliveryContext, type EventHandler } from './event-bus.js';
export type { BusBackend, BusCapabilities, ConsumerHandle, Delivery, GroupFilter, GroupRef, GroupSpec, GroupState, NewEvent, Position, StoredEvent, TenantLag } from './bus-backend.js';
export { EmbeddedBusBackend } from './backends/embedded/embedded-bus-backend.js';
export { NatsBusBackend, connectNatsBusBackend } from './backends/nats/nats-bus-backend.js';
export { busMigrations, type BusTables } from './bus.migrations.js';
export { parseTopicFilter, formatTopicFilter, globFilter, regexFilter, topicFilter, type TopicFilter } from './topic-filter.js';
export type { BusQuotas } from './tenant-quotas.js';
export type { TopicSettings, TopicSettingsChange } from './topic.registry.js';
export type { PayloadSchema } from './payload-schema.js';
export { createEventBus, type CreateEventBusOptions } from './create-event-bus.js';
export { registerBusRoutes, type BusRoutesOptions } from './bus.routes.js';
