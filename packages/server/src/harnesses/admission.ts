/** Told a waiting start's place in line (1 = next) and the budget it waits for. */
export type QueueListener = (position: number, budget: number) => void;

interface Waiter {
  key: string;
  resolve: (release: () => void) => void;
  listeners: QueueListener[];
  lastPosition: number;
}

/**
 * Harness slots on one replica. Every harness start takes a slot first, whoever asked (a session
 * created directly, a task's attempt, a resume, the warm pool), so the number of harnesses never
 * passes the budget however many sessions arrive at once; beyond it, starts wait in line, first come
 * first served, and are told their place. A slot is given back when its harness stops or is lost.
 * Hand-written: this is the scheduler's core (a counting semaphore with an ordered, observable
 * queue and an eviction hook), small enough that a library would add more than it saves.
 */
export class Admission {
  private used = 0;
  private readonly queue: Waiter[] = [];
  private evicting = false;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    readonly budget: number,
    /** Makes room when work waits: stops an idle harness; true if it did. */
    private readonly evict: () => Promise<boolean>,
    private readonly retryMs = 500,
  ) {}

  hasFreeSlot(): boolean {
    return this.used < this.budget && this.queue.length === 0;
  }

  waiting(): number {
    return this.queue.length;
  }

  inUse(): number {
    return this.used;
  }

  /** A slot for a harness that exists already (adopted after a restart), budget or not. */
  take(): () => void {
    this.used++;
    return this.releaser();
  }

  acquire(key: string, onQueued?: QueueListener): Promise<() => void> {
    if (this.hasFreeSlot()) {
      this.used++;
      return Promise.resolve(this.releaser());
    }
    return new Promise((resolve) => {
      this.queue.push({ key, resolve, listeners: onQueued ? [onQueued] : [], lastPosition: 0 });
      this.announce();
      this.makeRoom();
    });
  }

  /** Another caller waits for the same start: it hears the line too. */
  listen(key: string, l: QueueListener): void {
    const i = this.queue.findIndex((w) => w.key === key);
    if (i < 0) return;
    this.queue[i]!.listeners.push(l);
    l(i + 1, this.budget);
  }

  /** Gives every waiter up (shutdown): they resolve with a slot that the stopping manager refuses. */
  close(): void {
    clearTimeout(this.timer);
    for (const w of this.queue.splice(0)) w.resolve(() => {});
  }

  private releaser(): () => void {
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.used--;
      this.next();
    };
  }

  private next(): void {
    while (this.used < this.budget && this.queue.length > 0) {
      const w = this.queue.shift()!;
      this.used++;
      w.resolve(this.releaser());
    }
    this.announce();
  }

  private announce(): void {
    this.queue.forEach((w, i) => {
      if (w.lastPosition === i + 1) return;
      w.lastPosition = i + 1;
      for (const l of w.listeners) l(i + 1, this.budget);
    });
  }

  /**
   * While anything waits, keep trying to free a slot: a harness becomes evictable only when its
   * last session goes idle, which no event here announces, so this re-checks on a short timer.
   */
  private makeRoom(): void {
    if (this.evicting || this.queue.length === 0) return;
    clearTimeout(this.timer);
    this.evicting = true;
    void this.evict()
      // A failed eviction counts as one that freed nothing: the timer below tries again.
      .catch(() => false)
      .then((freed) => {
        this.evicting = false;
        if (this.queue.length === 0) return;
        if (freed) this.makeRoom();
        else {
          this.timer = setTimeout(() => this.makeRoom(), this.retryMs);
          this.timer.unref();
        }
      });
  }
}
