// The pods of this node, kept up to date from the Kubernetes API the way client-go's reflector
// does it: LIST /api/v1/pods?fieldSelector=spec.nodeName=<node> (in pages), then WATCH from the
// list's resourceVersion with allowWatchBookmarks, one watch after another:
//
// - a watch the server ends (its timeoutSeconds, 5-10 min) resumes from the last resourceVersion
//   seen, an event's or a BOOKMARK's; so does one that breaks in the middle of the stream (a
//   half-received event is dropped: it comes again, since its version is after the last one);
// - 410 Gone (an ERROR event with code 410, or the HTTP status) means that version is no longer
//   in the server's history: list again; pods missing from the new list were deleted meanwhile;
// - any other failure (connection refused, 401 while a token rotates, 5xx, a stream that stops
//   arriving) waits, with exponential backoff (1 s up to 30 s, jitter over the upper half of
//   each step, so never a busy loop) and tries again; nothing of it reaches the caller, so the
//   agent never stops for the API server's sake. Repeated failures are logged once per
//   REPEATED_LOG_MS, with a count.
//
// Memory stays bounded: a page of the list or one event at a time is parsed, and of each pod only
// its PodMeta is kept (pod-metadata.ts). What is read is capped: a page at MAX_PAGE_BYTES (a
// page too big is asked for again in pages of half as many pods), a watch event at
// MAX_EVENT_BYTES (a longer line is skipped to its end, never held whole), an error answer at
// ERROR_BODY_BYTES; what is refused is counted (stats.refused) and logged. A deleted pod is
// kept for a while (retention): the windows that still hold its processes' samples must name
// them too.

import type { IncomingMessage } from 'node:http';
import type { CgroupIds } from '../container-id.js';
import { logger, rateLimitedLog } from '../logger.js';
import type { Attributes } from '../otlp/profiles.js';
import { ApiError, apiGet, readBody, TooBig, statusError, type InClusterConfig } from './in-cluster.js';
import { podAttributes, podMeta, type ApiPod, type PodMeta } from './pod-metadata.js';
import { backoffDelay } from '../timers.js';

export interface PodWatcherOptions {
  config: InClusterConfig;
  nodeName: string;
  /** How long a deleted pod stays known (default 5 min). */
  deletedRetentionMs?: number;
  /** Backoff after a failure: first delay and cap (defaults 1 s, 30 s). */
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  /** Pods per page of a list (default 500). */
  pageSize?: number;
  /** Caps on what is read (defaults MAX_PAGE_BYTES, MAX_EVENT_BYTES). */
  maxPageBytes?: number;
  maxEventBytes?: number;
  random?: () => number;
}

export interface PodWatcherStats {
  /** Pods on the node (deleted ones that are still kept do not count). */
  pods: number;
  /** A list has completed: the pods are known. */
  synced: boolean;
  lists: number;
  /** Watches that ended, by why: the server closed it, it failed, its version was gone. */
  restarts: { closed: number; error: number; gone: number };
  /** Answers refused for their size: list pages (asked again smaller) and watch events (skipped). */
  refused: { page: number; event: number };
}

/**
 * Bytes of one list page, or of one watch event, at most. A pod is 5-50 KB of JSON, and never
 * more than etcd's request limit (1.5 MiB by default): a page of 500 ordinary pods fits in
 * 32 MiB, any one pod in an event of 4 MiB.
 */
export const MAX_PAGE_BYTES = 32 << 20;
export const MAX_EVENT_BYTES = 4 << 20;
const REPEATED_LOG_MS = 10_000;
/** Containers given up on (waited for once, never seen) remembered at most. */
const MAX_GIVEN_UP = 10_000;

class Gone extends Error {}

export class PodWatcher {
  private readonly pods = new Map<string, PodMeta>();
  private readonly byContainer = new Map<string, PodMeta>();
  /** uid → when the pod was deleted. */
  private readonly deleted = new Map<string, number>();
  private readonly waiters = new Set<() => void>();
  private readonly givenUp = new Set<string>();
  private resourceVersion = '';
  private synced = false;
  private stopped = false;
  private readonly abort = new AbortController();
  private wake: (() => void) | undefined;
  private sweeper: NodeJS.Timeout | undefined;
  private readonly stats_: PodWatcherStats = { pods: 0, synced: false, lists: 0, restarts: { closed: 0, error: 0, gone: 0 }, refused: { page: 0, event: 0 } };
  private readonly log = logger().child({ component: 'kubernetes' });
  private readonly limited = rateLimitedLog(this.log, REPEATED_LOG_MS);
  private readonly retentionMs: number;

  constructor(private readonly opts: PodWatcherOptions) {
    this.retentionMs = opts.deletedRetentionMs ?? 5 * 60_000;
  }

  start(): void {
    this.sweeper = setInterval(() => this.sweep(), Math.min(this.retentionMs, 60_000));
    this.sweeper.unref();
    this.run().catch((e: Error) => this.log.error({ err: e.message }, 'pod watcher stopped'));
  }

  stop(): void {
    this.stopped = true;
    this.abort.abort();
    clearInterval(this.sweeper);
    this.wake?.();
    for (const w of [...this.waiters]) w();
  }

  get stats(): PodWatcherStats {
    return { ...this.stats_, pods: this.pods.size - this.deleted.size, synced: this.synced, restarts: { ...this.stats_.restarts }, refused: { ...this.stats_.refused } };
  }

  /** The Kubernetes attributes of a process in the container/pod `ids`, when its pod is known. */
  attributes(ids: CgroupIds): Attributes | undefined {
    const pod = (ids.containerId && this.byContainer.get(ids.containerId)) || (ids.podUid && this.pods.get(ids.podUid)) || undefined;
    return pod ? podAttributes(pod, ids.containerId) : undefined;
  }

  /**
   * Resolves when the pods (and containers) of all `ids` are known, or after `timeoutMs`. Each
   * container is waited for once: one still unknown then (not Kubernetes's, or the API server
   * is away) does not delay later calls.
   */
  whenKnown(ids: CgroupIds[], timeoutMs: number): Promise<void> {
    const wanted = ids.filter((i) => (i.containerId || i.podUid) && !this.givenUp.has(waitKey(i)));
    const missing = () => wanted.filter((i) => !this.known(i));
    if (this.stopped || timeoutMs <= 0 || wanted.length === 0 || (this.synced && missing().length === 0)) return Promise.resolve();
    return new Promise((resolve) => {
      const finish = () => {
        clearTimeout(timer);
        this.waiters.delete(check);
        for (const i of missing()) this.giveUp(waitKey(i));
        resolve();
      };
      const check = () => {
        if (this.stopped || (this.synced && missing().length === 0)) finish();
      };
      const timer = setTimeout(finish, timeoutMs);
      this.waiters.add(check);
    });
  }

  private known(i: CgroupIds): boolean {
    return i.containerId ? this.byContainer.has(i.containerId) : this.pods.has(i.podUid!);
  }

  private giveUp(key: string): void {
    if (this.givenUp.size >= MAX_GIVEN_UP) this.givenUp.delete(this.givenUp.values().next().value!);
    this.givenUp.add(key);
  }

  private notify(): void {
    for (const w of [...this.waiters]) w();
  }

  private async run(): Promise<void> {
    let list = true;
    let failures = 0;
    while (!this.stopped) {
      let delay = 0;
      try {
        if (list) {
          await this.list();
          list = false;
          failures = 0;
        }
        const started = Date.now();
        const { events } = await this.watch();
        this.stats_.restarts.closed++;
        // A watch that ends at once with nothing in it is a failure in disguise: no busy loop.
        failures = events > 0 || Date.now() - started > 5000 ? 0 : failures + 1;
        if (failures > 0) delay = this.backoff(failures);
        this.log.debug({ resourceVersion: this.resourceVersion, events }, 'watch ended; resuming');
      } catch (e) {
        if (this.stopped) break;
        if (e instanceof Gone || (e instanceof ApiError && e.status === 410)) {
          // The version is too old: list again, at once (client-go does the same); unless it
          // was the list's own continue token that expired, then after a while.
          this.stats_.restarts.gone++;
          this.log.info({ resourceVersion: this.resourceVersion }, 'watch version expired (410 Gone); listing the pods again');
          if (list) delay = this.backoff(++failures);
          list = true;
          this.resourceVersion = '';
        } else {
          if (!list) this.stats_.restarts.error++;
          failures++;
          delay = this.backoff(failures);
          const status = e instanceof ApiError ? e.status : undefined;
          this.limited.log('warn', `${list} ${status ?? (e as Error).message}`, { err: (e as Error).message, status, retryInMs: delay }, list ? 'cannot list the pods' : 'pod watch failed');
        }
      }
      if (delay > 0 && !this.stopped) await this.sleep(delay);
    }
  }

  private backoff(failures: number): number {
    const o = this.opts;
    return backoffDelay(failures - 1, { initialMs: o.initialBackoffMs ?? 1000, capMs: o.maxBackoffMs ?? 30_000, random: o.random });
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(done, ms);
      t.unref();
      function done() {
        clearTimeout(t);
        resolve();
      }
      this.wake = done;
    });
  }

  private query(extra: Record<string, string>): string {
    return `/api/v1/pods?${new URLSearchParams({ fieldSelector: `spec.nodeName=${this.opts.nodeName}`, ...extra }).toString()}`;
  }

  /** Lists the node's pods (every page) and makes them the known ones. */
  private async list(): Promise<void> {
    const items: PodMeta[] = [];
    let cont = '';
    let version = '';
    // The first list may come from the API server's cache (resourceVersion=0, cheap for a
    // server with a thousand nodes listing at once); after a 410 it must be current.
    const fromCache = this.stats_.lists === 0 && !this.synced;
    let limit = this.opts.pageSize ?? 500;
    for (;;) {
      const res = await apiGet(this.opts.config, this.query({ limit: String(limit), ...(cont ? { continue: cont } : fromCache ? { resourceVersion: '0' } : {}) }), {
        signal: this.abort.signal,
        idleMs: 60_000,
      });
      let text: string;
      try {
        text = await readBody(res, this.opts.maxPageBytes ?? MAX_PAGE_BYTES);
      } catch (e) {
        if (!(e instanceof TooBig)) throw e;
        this.stats_.refused.page++;
        if (limit === 1) throw e;
        // The same page again, in fewer pods (a continue token does not depend on the limit).
        limit = Math.ceil(limit / 2);
        this.limited.log('warn', 'page too big', { maxBytes: e.max, pods: limit }, 'a page of pods was too big to read; asking for smaller pages');
        continue;
      }
      const page = JSON.parse(text) as { metadata?: { resourceVersion?: string; continue?: string }; items?: ApiPod[] };
      for (const p of page.items ?? []) {
        const m = podMeta(p);
        if (m) items.push(m);
      }
      version = page.metadata?.resourceVersion ?? '';
      cont = page.metadata?.continue ?? '';
      if (!cont) break;
    }
    const now = Date.now();
    const listed = new Set(items.map((m) => m.uid));
    for (const uid of this.pods.keys()) if (!listed.has(uid) && !this.deleted.has(uid)) this.deleted.set(uid, now);
    for (const m of items) this.upsert(m);
    this.resourceVersion = version;
    this.stats_.lists++;
    if (!this.synced) this.log.info({ node: this.opts.nodeName, pods: items.length }, 'pods of this node listed');
    this.synced = true;
    this.notify();
  }

  /** One watch, until the server ends it (resolves) or it fails (rejects; Gone for a 410). */
  private async watch(): Promise<{ events: number }> {
    const timeoutSeconds = 300 + Math.floor((this.opts.random ?? Math.random)() * 300);
    const res: IncomingMessage = await apiGet(
      this.opts.config,
      this.query({ watch: '1', resourceVersion: this.resourceVersion, allowWatchBookmarks: 'true', timeoutSeconds: String(timeoutSeconds) }),
      // Bookmarks come about once a minute: a silent stream is a dead one.
      { signal: this.abort.signal, idleMs: (timeoutSeconds + 60) * 1000 },
    );
    const maxEvent = this.opts.maxEventBytes ?? MAX_EVENT_BYTES;
    return new Promise((resolve, reject) => {
      // The line so far, in the chunks it came in (bytes: a chunk may end inside a character).
      let parts: Buffer[] = [];
      let partBytes = 0;
      /** In a line too long to keep: dropped up to its newline. */
      let skipping = false;
      let events = 0;
      let failure: Error | undefined;
      const line = (bytes: Buffer) => {
        const text = bytes.toString('utf8');
        if (!text.trim()) return;
        try {
          this.event(text);
          events++;
        } catch (e) {
          failure = e as Error;
        }
      };
      res.on('data', (chunk: Buffer) => {
        let from = 0;
        while (failure === undefined) {
          const nl = chunk.indexOf(0x0a, from);
          const piece = chunk.subarray(from, nl < 0 ? chunk.length : nl);
          if (!skipping && partBytes + piece.length > maxEvent) {
            skipping = true;
            parts = [];
            partBytes = 0;
            this.stats_.refused.event++;
            this.limited.log('warn', 'event too big', { maxBytes: maxEvent }, 'a watch event too big to read was skipped');
          }
          if (!skipping && piece.length > 0) {
            parts.push(piece);
            partBytes += piece.length;
          }
          if (nl < 0) break;
          if (!skipping) line(parts.length === 1 ? parts[0]! : Buffer.concat(parts));
          skipping = false;
          parts = [];
          partBytes = 0;
          from = nl + 1;
        }
        if (failure !== undefined) res.destroy();
      });
      res.on('error', () => {
        // 'close' says how it ended
      });
      // 'end' may come after a destroy() here, when the whole answer had arrived already.
      res.on('end', () => (failure === undefined ? resolve({ events }) : reject(failure)));
      res.on('close', () => {
        if (failure !== undefined) reject(failure);
        else if (!res.complete) reject(new Error(`the watch broke after ${events} events`));
      });
    });
  }

  /** One line of a watch: an event. Throws Gone for an expired version, an ApiError for other errors. */
  private event(line: string): void {
    const e = JSON.parse(line) as { type?: string; object?: ApiPod & { code?: number } };
    const obj = e.object ?? {};
    if (e.type === 'ERROR') {
      if (obj.code === 410) throw new Gone();
      throw statusError(obj.code ?? 0, JSON.stringify(obj));
    }
    const version = obj.metadata?.resourceVersion;
    if (e.type === 'ADDED' || e.type === 'MODIFIED') {
      const m = podMeta(obj);
      if (m) this.upsert(m);
    } else if (e.type === 'DELETED') {
      const uid = obj.metadata?.uid;
      if (uid && this.pods.has(uid) && !this.deleted.has(uid)) this.deleted.set(uid, Date.now());
    } else if (e.type !== 'BOOKMARK') {
      throw new Error(`unknown watch event type '${String(e.type).slice(0, 40)}'`);
    }
    if (version) this.resourceVersion = version;
    this.notify();
  }

  private upsert(m: PodMeta): void {
    const old = this.pods.get(m.uid);
    if (old) for (const id of old.containers.keys()) if (this.byContainer.get(id) === old) this.byContainer.delete(id);
    this.pods.set(m.uid, m);
    this.deleted.delete(m.uid);
    for (const id of m.containers.keys()) this.byContainer.set(id, m);
  }

  /** Forgets the pods deleted longer ago than the retention. */
  private sweep(): void {
    const now = Date.now();
    for (const [uid, at] of this.deleted) {
      if (now - at < this.retentionMs) continue;
      const pod = this.pods.get(uid);
      if (pod) for (const id of pod.containers.keys()) if (this.byContainer.get(id) === pod) this.byContainer.delete(id);
      this.pods.delete(uid);
      this.deleted.delete(uid);
    }
  }
}

function waitKey(i: CgroupIds): string {
  return i.containerId ?? i.podUid!;
}
