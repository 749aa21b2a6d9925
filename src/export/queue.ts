// The agent's export queue, one per destination: encoded windows wait here, in order, until
// the destination takes them. Bounded in bytes: when a new window does not fit, the oldest
// ones are dropped and counted, so the agent never blocks the reader nor grows without bound
// while a backend is down. One send at a time; a retryable failure waits and tries the same
// window again; a final failure drops it and counts it. (For Pyroscope's /ingest an item is one
// process's profile of a window rather than the whole window.) Nothing leaves the queue without
// being counted as sent, rejected in part, or dropped for a reason.
//
// The wait before a retry is the longer of the queue's own backoff and the delay the server
// asked for (Retry-After, RetryInfo), as the OpenTelemetry Collector's exporterhelper does,
// and at most MAX_RETRY_DELAY_MS:
// - the backoff grows exponentially (1 s, 2 s, 4 s … up to 30 s) with jitter over the upper
//   half of each step, so it is never less than half a step: a server that says "again at once"
//   (Retry-After: 0, a 503 in a loop) is asked no more than the backoff allows, not hundreds of
//   times a second;
// - the ceiling (5 minutes, the Collector's default max_elapsed_time) keeps a huge delay from a
//   server (or one that overflows a timer) from stopping delivery for good; unlike the
//   Collector, which drops a batch whose delay goes past it, the window stays queued (the queue
//   is bounded anyway) and is tried again then.
// At shutdown, drain() cuts the send in flight at its deadline (through the AbortSignal the
// send gets) and counts what is left as dropped at shutdown.

import type { ExportResult } from '../otlp/exporter.js';
import { backoffDelay, timerDelay } from '../timers.js';

export interface QueueItem {
  body: Uint8Array;
  /** Profiles in the window (what a partial success's rejected count is out of). */
  profiles: number;
  /** When the window was queued (ms, Date.now()). */
  queuedAt: number;
  /** What a destination needs besides the body, when the body alone does not say where it goes
   * (Pyroscope's /ingest: the query string and the multipart content type). */
  request?: { query: string; contentType: string };
}

export interface QueueOptions {
  /** Bytes of queued windows at most (default 64 MiB). */
  maxBytes?: number;
  /** Sends one window; `signal` aborts when the shutdown deadline cuts the send. */
  send: (item: QueueItem, signal: AbortSignal) => Promise<ExportResult>;
  /** Backoff after a retryable failure: first delay, cap, growth (defaults 1 s, 30 s, 2). */
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  multiplier?: number;
  /** The longest wait before a retry, whatever the server asks (default MAX_RETRY_DELAY_MS). */
  maxRetryDelayMs?: number;
  /** Called for every outcome (logging, metrics), with the wait before the retry if there is one. */
  onResult?: (r: ExportResult, item: QueueItem, attempt: number, retryInMs?: number) => void;
  random?: () => number;
}

export interface QueueStats {
  queued: number;
  queuedBytes: number;
  sent: number;
  sentBytes: number;
  /** Sends that failed and will be tried again. */
  retries: number;
  /** Windows dropped: the queue was full (oldest first), or the destination refused them. */
  droppedFull: number;
  droppedFinal: number;
  /** Windows still queued at shutdown. */
  droppedShutdown: number;
  /** Profiles the destination rejected in partial successes. */
  rejectedProfiles: number;
}

export const DEFAULT_QUEUE_BYTES = 64 << 20;
/** The longest wait before a retry (see the header). */
export const MAX_RETRY_DELAY_MS = 5 * 60_000;

export class ExportQueue {
  private readonly items: QueueItem[] = [];
  private bytes = 0;
  private running = false;
  /** The window whose send has not answered yet, and what cuts it short. */
  private inFlight: QueueItem | undefined;
  private abort: AbortController | undefined;
  private stopped = false;
  private wake: (() => void) | undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly stats_: QueueStats = {
    queued: 0,
    queuedBytes: 0,
    sent: 0,
    sentBytes: 0,
    retries: 0,
    droppedFull: 0,
    droppedFinal: 0,
    droppedShutdown: 0,
    rejectedProfiles: 0,
  };

  constructor(private readonly opts: QueueOptions) {}

  get stats(): QueueStats {
    return { ...this.stats_, queued: this.items.length, queuedBytes: this.bytes };
  }

  /** Queues a window; drops the oldest ones while it does not fit. False when it was dropped
   * itself (bigger than the whole queue, or the queue is stopped). */
  push(body: Uint8Array, profiles: number, request?: QueueItem['request']): boolean {
    const max = this.opts.maxBytes ?? DEFAULT_QUEUE_BYTES;
    if (this.stopped || body.length > max) {
      this.stats_.droppedFull++;
      return false;
    }
    // A window being sent stays (it is dropped, if at all, by its own outcome); one waiting
    // for its retry is just the oldest, and goes first.
    const keep = this.inFlight !== undefined && this.items[0] === this.inFlight ? 1 : 0;
    while (this.bytes + body.length > max && this.items.length > keep) {
      const victim = this.items.splice(keep, 1)[0]!;
      this.bytes -= victim.body.length;
      this.stats_.droppedFull++;
    }
    if (this.bytes + body.length > max) {
      this.stats_.droppedFull++;
      return false;
    }
    this.items.push({ body, profiles, queuedAt: Date.now(), ...(request ? { request } : {}) });
    this.bytes += body.length;
    this.kick();
    return true;
  }

  /**
   * Sends what is queued until it is empty or `deadlineMs` (Date.now() based) has come; then
   * stops: later pushes are dropped, and what is left is counted as dropped at shutdown.
   */
  async drain(deadlineMs: number): Promise<void> {
    const left = deadlineMs - Date.now();
    // A wait for a retry ends now: the deadline decides.
    this.fireTimer();
    let deadline: NodeJS.Timeout | undefined;
    await Promise.race([this.whenEmpty(), new Promise<void>((r) => (deadline = setTimeout(r, timerDelay(left))))]);
    clearTimeout(deadline);
    this.stopped = true;
    this.fireTimer();
    // The send in flight ends now; its window is counted here, as left at shutdown.
    this.abort?.abort();
    this.stats_.droppedShutdown += this.items.length;
    this.items.length = 0;
    this.bytes = 0;
  }

  private whenEmpty(): Promise<void> {
    return new Promise((resolve) => {
      const check = () => ((this.items.length === 0 && !this.running) || this.stopped ? resolve() : setTimeout(check, 20));
      check();
    });
  }

  private fireTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  private kick(): void {
    if (this.running || this.stopped) return;
    this.running = true;
    void this.run().finally(() => {
      this.running = false;
    });
  }

  private async run(): Promise<void> {
    let attempt = 0;
    while (!this.stopped && this.items.length > 0) {
      const item = this.items[0]!;
      let r: ExportResult;
      this.inFlight = item;
      const abort = (this.abort = new AbortController());
      try {
        r = await this.opts.send(item, abort.signal);
      } catch (e) {
        r = { ok: false, retryable: true, message: (e as Error).message };
      } finally {
        this.inFlight = undefined;
        this.abort = undefined;
      }
      // Cut at the shutdown deadline: counted there, nothing to report.
      if (abort.signal.aborted) break;
      const delay = !r.ok && r.retryable ? this.retryDelay(r, attempt) : undefined;
      this.opts.onResult?.(r, item, attempt, delay);
      // Gone while it was being sent: the shutdown took it and counted it already.
      if (this.items[0] !== item) break;
      if (r.ok || !r.retryable) {
        this.items.shift();
        this.bytes -= item.body.length;
        if (r.ok) {
          this.stats_.sent++;
          this.stats_.sentBytes += item.body.length;
          this.stats_.rejectedProfiles += r.rejected ?? 0;
        } else {
          this.stats_.droppedFinal++;
        }
        attempt = 0;
        continue;
      }
      this.stats_.retries++;
      attempt++;
      await new Promise<void>((resolve) => {
        this.wake = resolve;
        this.timer = setTimeout(() => this.fireTimer(), delay);
        this.timer.unref();
      });
    }
  }

  /** The wait before trying again after `r` (see the header); always a delay a timer honours. */
  private retryDelay(r: ExportResult, attempt: number): number {
    const server = r.retryAfterMs !== undefined && r.retryAfterMs > 0 ? r.retryAfterMs : 0;
    return timerDelay(Math.min(this.opts.maxRetryDelayMs ?? MAX_RETRY_DELAY_MS, Math.max(this.backoff(attempt), server)));
  }

  private backoff(attempt: number): number {
    const o = this.opts;
    return backoffDelay(attempt, { initialMs: o.initialBackoffMs ?? 1000, capMs: o.maxBackoffMs ?? 30_000, multiplier: o.multiplier, random: o.random });
  }
}
