// JIT symbol maps (/tmp/perf-PID.map): one `START SIZE name` line per generated function, hex
// addresses, written by V8 (--perf-basic-prof), the JVM (perf-map-agent), .NET, LuaJIT …
// The file grows while the process runs, so it is re-read when its size changes.

import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { lastAtOrBelow } from './sorted-search.js';

const MAX_MAP_BYTES = 256 << 20;

export interface PerfMapHit {
  name: string;
  offset: number;
}

export class PerfMap {
  private starts = new Float64Array(0);
  private ends = new Float64Array(0);
  private names: string[] = [];
  private loadedSize = -1;
  private loadedMtime = -1;

  constructor(readonly path: string) {}

  /** Re-reads the file if it changed; false when it does not exist (or cannot be read). */
  refresh(): boolean {
    let fd: number;
    try {
      fd = openSync(this.path, 'r');
    } catch {
      return this.loadedSize >= 0;
    }
    try {
      const st = fstatSync(fd);
      if (!st.isFile()) return false;
      if (st.size === this.loadedSize && st.mtimeMs === this.loadedMtime) return true;
      const size = Math.min(st.size, MAX_MAP_BYTES);
      const buf = Buffer.allocUnsafe(size);
      let done = 0;
      while (done < size) {
        const n = readSync(fd, buf, done, size - done, done);
        if (n <= 0) break;
        done += n;
      }
      this.parse(buf.toString('utf8', 0, done));
      this.loadedSize = st.size;
      this.loadedMtime = st.mtimeMs;
      return true;
    } catch {
      return this.loadedSize >= 0;
    } finally {
      closeSync(fd);
    }
  }

  get length(): number {
    return this.starts.length;
  }

  lookup(addr: number): PerfMapHit | undefined {
    const starts = this.starts;
    const found = lastAtOrBelow(starts, addr);
    if (found < 0 || addr >= this.ends[found]) return undefined;
    return { name: this.names[found], offset: addr - starts[found] };
  }

  private parse(text: string): void {
    const rows: Array<{ start: number; end: number; name: string; seq: number }> = [];
    let seq = 0;
    for (const line of text.split('\n')) {
      const a = line.indexOf(' ');
      if (a <= 0) continue;
      const b = line.indexOf(' ', a + 1);
      if (b <= a + 1) continue;
      const start = parseInt(line.slice(0, a), 16);
      const size = parseInt(line.slice(a + 1, b), 16);
      const name = line.slice(b + 1).trim();
      if (!Number.isFinite(start) || !Number.isFinite(size) || size <= 0 || name.length === 0) continue;
      rows.push({ start, end: start + size, name, seq: seq++ });
    }
    // JITs reuse code space: for one start address the latest line wins.
    rows.sort((x, y) => x.start - y.start || y.seq - x.seq);
    const kept = rows.filter((r, i) => i === 0 || rows[i - 1].start !== r.start);
    this.starts = Float64Array.from(kept, (r) => r.start);
    this.ends = Float64Array.from(kept, (r) => r.end);
    this.names = kept.map((r) => r.name);
  }
}
