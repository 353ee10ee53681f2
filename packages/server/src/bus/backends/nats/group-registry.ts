import { DeliverPolicy, DiscardPolicy, JetStreamApiCodes, StorageType, type ConsumerConfig, type JetStreamClient, type JetStreamManager, type StoredMsg } from '@nats-io/jetstream';
import { FlowgateError } from '../../../errors/index.js';
import type { Clock } from '../../../kernel/index.js';
import type { GroupRef, GroupSpec, Position } from '../../bus-backend.js';
import { formatTopicFilter, parseTopicFilter, type TopicFilter } from '../../topic-filter.js';
import type { BusNames } from './subjects.js';
import { isCode } from './topic-streams.js';

/** A consumer group as recorded in the `<PREFIX>_GROUPS` stream. */
export interface GroupRecord extends GroupRef {
  readonly filter: TopicFilter;
  /** When the group was created, by the Flowgate clock. */
  readonly createdAt: number;
  /** Where the group's consumers start on a stream they meet for the first time. */
  readonly startAt: Position;
  /**
   * When `startAt` was recorded, by the NATS server's clock (RFC 3339): a group that
   * starts at 'latest' reads, on every stream, what was stored after this. Using the
   * server's own time keeps it comparable with message times whatever the local clock.
   */
  readonly since: string;
}

interface RecordBody {
  readonly tenant: string | null;
  readonly name: string;
  readonly filter: string;
  readonly createdAt: number;
  readonly startAt: Position;
}

/**
 * Group records: one subject per group with `max_msgs_per_subject: 1`, so the stream is a
 * small key-value table (the KV client is not a dependency). The first record is written
 * with an expected last subject sequence of 0, so two processes creating the same group
 * at once agree on one record.
 */
export class GroupRegistry {
  constructor(
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
    private readonly names: BusNames,
    private readonly clock: Clock,
  ) {}

  async init(): Promise<void> {
    const name = this.names.groupsStream;
    try {
      await this.jsm.streams.info(name);
    } catch (error) {
      if (!isCode(error, JetStreamApiCodes.StreamNotFound)) throw error;
      await this.jsm.streams.add({
        name,
        subjects: [this.names.groupsWildcard],
        max_msgs_per_subject: 1,
        storage: StorageType.File,
        discard: DiscardPolicy.Old,
        num_replicas: 1,
        description: 'Flowgate consumer groups',
      });
    }
  }

  async get(ref: GroupRef): Promise<GroupRecord | undefined> {
    const msg = await this.jsm.streams.getMessage(this.names.groupsStream, { last_by_subj: this.names.groupSubject(ref) });
    return msg ? toRecord(msg) : undefined;
  }

  /** The group's record, creating it on first use; a different filter is a conflict. */
  async join(spec: GroupSpec): Promise<GroupRecord> {
    let record = await this.get(spec);
    if (!record) {
      const body: RecordBody = { tenant: spec.tenant, name: spec.name, filter: formatTopicFilter(spec.filter), createdAt: this.clock.now(), startAt: spec.startAt };
      try {
        await this.js.publish(this.names.groupSubject(spec), JSON.stringify(body), { expect: { lastSubjectSequence: 0 } });
      } catch (error) {
        // Someone else created it first: theirs stands.
        if (!isCode(error, JetStreamApiCodes.StreamWrongLastSequence)) throw error;
      }
      record = await this.get(spec);
      if (!record) throw new FlowgateError('FLOWGATE_ERR_BUS_UNAVAILABLE', 'The consumer group could not be created.');
    }
    if (record.filter.kind !== spec.filter.kind || record.filter.source !== spec.filter.source) {
      throw new FlowgateError('FLOWGATE_ERR_BUS_GROUP_CONFLICT', `The group "${spec.name}" reads ${formatTopicFilter(record.filter)}, not ${formatTopicFilter(spec.filter)}.`);
    }
    return record;
  }

  /** Records a new start position (a seek); returns the record as now stored. */
  async reposition(record: GroupRecord, to: Position): Promise<GroupRecord> {
    const body: RecordBody = { tenant: record.tenant, name: record.name, filter: formatTopicFilter(record.filter), createdAt: record.createdAt, startAt: to };
    await this.js.publish(this.names.groupSubject(record), JSON.stringify(body));
    const stored = await this.get(record);
    if (!stored) throw notFound(record);
    return stored;
  }

  /** Every group (or a tenant's own groups), ordered by scope then name. */
  async list(tenant?: string): Promise<GroupRecord[]> {
    const filter = tenant === undefined ? this.names.groupsWildcard : this.names.groupsOfTenant(tenant);
    const info = await this.jsm.streams.info(this.names.groupsStream, { subjects_filter: filter });
    const subjects = Object.keys(info.state.subjects ?? {});
    const records: GroupRecord[] = [];
    for (const subject of subjects) {
      const msg = await this.jsm.streams.getMessage(this.names.groupsStream, { last_by_subj: subject });
      if (msg) records.push(toRecord(msg));
    }
    const scope = (r: GroupRecord) => r.tenant ?? '*';
    return records.sort((a, b) => (scope(a) === scope(b) ? a.name.localeCompare(b.name) : scope(a).localeCompare(scope(b))));
  }

  async remove(ref: GroupRef): Promise<boolean> {
    const existed = (await this.get(ref)) !== undefined;
    if (existed) await this.jsm.streams.purge(this.names.groupsStream, { filter: this.names.groupSubject(ref) });
    return existed;
  }
}

function toRecord(msg: StoredMsg): GroupRecord {
  const body = msg.json<RecordBody>();
  const filter = parseTopicFilter(body.filter);
  return { tenant: body.tenant, name: body.name, filter, createdAt: body.createdAt, startAt: body.startAt, since: msg.timestamp };
}

/** The deliver policy of a group's consumer on a stream it meets for the first time. */
export function startOf(record: GroupRecord): Partial<ConsumerConfig> {
  return positionStart(record.startAt, record.since);
}

/**
 * A position as a consumer's deliver policy. `latest` becomes "stored after `since`"
 * rather than DeliverPolicy.New, so that it means the same on a stream met later.
 * A seq applies to each stream on its own: JetStream sequences are per topic.
 */
export function positionStart(position: Position, since: string): Partial<ConsumerConfig> {
  switch (position.kind) {
    case 'earliest':
      return { deliver_policy: DeliverPolicy.All };
    case 'latest':
      return { deliver_policy: DeliverPolicy.StartTime, opt_start_time: since };
    case 'seq':
      return { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: Math.max(1, Math.floor(position.seq)) };
    case 'time':
      return { deliver_policy: DeliverPolicy.StartTime, opt_start_time: new Date(position.time).toISOString() };
  }
}

export function notFound(ref: GroupRef): FlowgateError {
  return new FlowgateError('FLOWGATE_ERR_RESOURCE_NOT_FOUND', `There is no consumer group "${ref.name}".`);
}
