/**
 * The receive side of a step stream: frames arrive as transport events (a WebSocket message, a
 * worker message) while the step logic awaits them one at a time. `Mailbox` queues what arrives
 * and hands it out in order; a wait can time out, and closing the mailbox rejects every wait with
 * the reason, so a pass blocked in a LoRA hook unwinds when its connection goes away.
 * Host-agnostic (setTimeout only).
 */

/** A wait that ran out of time; `what` says what was awaited. */
export class MailboxTimeout extends Error {
  constructor(readonly what: string, readonly ms: number) {
    super(`no ${what} within ${ms / 1000} s; the peer stopped answering`);
    this.name = "MailboxTimeout";
  }
}

export class Mailbox<T> {
  readonly #items: T[] = [];
  #waiter: { resolve: (item: T) => void; reject: (e: Error) => void } | null = null;
  #closed: Error | null = null;

  /** Items queued and not yet taken. */
  get size(): number {
    return this.#items.length;
  }

  /** The reason given to `close`, or null while open. */
  get closed(): Error | null {
    return this.#closed;
  }

  /** Queues an item (dropped once closed: nobody will take it). */
  push(item: T): void {
    if (this.#closed) return;
    const w = this.#waiter;
    if (w !== null) {
      this.#waiter = null;
      w.resolve(item);
    } else this.#items.push(item);
  }

  /**
   * The next item, in arrival order. Rejects with the close reason once closed, or with
   * MailboxTimeout after `timeoutMs` (none by default). One wait at a time.
   */
  next(timeoutMs?: number, what = "message"): Promise<T> {
    if (this.#items.length > 0) return Promise.resolve(this.#items.shift()!);
    if (this.#closed) return Promise.reject(this.#closed);
    if (this.#waiter !== null) {
      return Promise.reject(new Error("Mailbox.next: another wait is pending; await it first"));
    }
    return new Promise<T>((resolve, reject) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const done = () => {
        if (timer !== undefined) clearTimeout(timer);
        this.#waiter = null;
      };
      this.#waiter = {
        resolve: (item) => {
          done();
          resolve(item);
        },
        reject: (e) => {
          done();
          reject(e);
        },
      };
      if (timeoutMs !== undefined && Number.isFinite(timeoutMs)) {
        timer = setTimeout(
          () => this.#waiter?.reject(new MailboxTimeout(what, timeoutMs)),
          timeoutMs,
        );
      }
    });
  }

  /**
   * Rejects the pending and all later waits with `reason`. Queued items are dropped, or with
   * `drain` still handed out first (the peer said goodbye after its last message).
   */
  close(reason: Error, opts: { drain?: boolean } = {}): void {
    if (this.#closed) {
      if (!opts.drain) this.#items.length = 0;
      return;
    }
    this.#closed = reason;
    if (!opts.drain) this.#items.length = 0;
    this.#waiter?.reject(reason);
  }
}
