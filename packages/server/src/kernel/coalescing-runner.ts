export interface CoalescingRunnerOptions {
  /**
   * Called when a run throws. Resolve to `true` to run again at once (after any pause it
   * takes), otherwise the runner waits for the next trigger.
   */
  readonly onError: (error: unknown) => boolean | Promise<boolean>;
  /** Called each time the runner goes idle and is not stopped (to arm a poll timer, say). */
  readonly onIdle?: () => void | Promise<void>;
  /** Start a triggered run on the next turn of the event loop, so triggers of this turn share it. */
  readonly defer?: boolean;
}

/**
 * Runs `work` now, or once more right after the run in progress: however often
 * {@link trigger} is called during a run, exactly one more run follows it. Runs never
 * overlap. `work` resolving to `true` asks for another run itself (more is waiting).
 *
 * Used where something must catch up with a store after a wake-up: a consumer group's
 * dispatch, the outbox relay, a live watch.
 */
export class CoalescingRunner {
  private running: Promise<void> | undefined;
  private again = false;
  private stopped = false;

  constructor(
    private readonly work: () => Promise<boolean | void>,
    private readonly options: CoalescingRunnerOptions,
  ) {}

  /** Whether a run is under way or about to start. */
  get busy(): boolean {
    return this.running !== undefined;
  }

  trigger(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = this.options.defer ? new Promise<void>((resolve) => setImmediate(() => void this.loop().finally(resolve))) : this.loop();
  }

  /** No run starts after this; resolves once the run in progress (if any) has ended. */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.running;
  }

  private async loop(): Promise<void> {
    try {
      do {
        this.again = false;
        if (this.stopped) return;
        try {
          if ((await this.work()) === true) this.again = true;
        } catch (error) {
          if (await this.options.onError(error)) this.again = true;
        }
      } while (this.again && !this.stopped);
    } finally {
      this.running = undefined;
      if (!this.stopped) await this.options.onIdle?.();
    }
  }
}
