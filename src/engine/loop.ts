/**
 * The one sync loop of both modes: runs a source's reconcile one at a time,
 * on a timer (the safety net) and whenever a source asks (an event, a
 * reload). A call during a run coalesces into at most one more run after it,
 * so a change that arrives mid-run is never lost and a burst costs two runs.
 */
export class SyncLoop {
  private running?: Promise<void>;
  private again = false;
  private stopped = false;
  private timer?: NodeJS.Timeout;

  constructor(
    private readonly once: () => Promise<void>,
    private readonly intervalMs: number,
  ) {}

  /** Start the timer (each tick is a trigger). */
  start(): void {
    this.timer ??= setInterval(() => void this.trigger(), this.intervalMs);
  }

  /** Run now, or once more after the run in progress; resolves when the runs are done. `once` must not throw. */
  trigger(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      try {
        do {
          this.again = false;
          await this.once();
        } while (this.again && !this.stopped);
      } finally {
        this.running = undefined;
      }
    })();
    return this.running;
  }

  /** Stop the timer and wait for the run in progress. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.running?.catch(() => undefined);
  }
}
