// Merges a profile's samples into the call tree the flame graph draws, and encodes it compactly
// for embedding: a string table and function table as JSON, the tree as varint columns, all
// gzipped together. The page decodes it with the browser's DecompressionStream.
//
// Tree: node 0 is the root ("all"); its children are processes; below them frames root→leaf.
// Frames merge by function (name, kind, file, inlined), not by address or line, so one function
// is one box per call path, as in every flame graph; a line is kept only if all merged frames agree.

import { gzipSync } from 'node:zlib';
import type { FrameKind, Profile } from '../../profile-model.js';
import { hasOffCpu, sampleTypeLabel } from '../sample-type.js';

/** Kinds as numbers in the function table; the page has the same list. */
export const KIND_CODES: readonly string[] = ['kernel', 'native', 'go', 'unknown', 'process', 'root'];
const KIND_PROCESS = 4;
const KIND_ROOT = 5;

/** The page checks this before decoding, so an old page never misreads a new payload. */
export const PAYLOAD_MAGIC = 'FWG1';

export interface FlameMeta {
  title: string;
  /**
   * `label` names the type in the page ("Off-CPU", "Wall (CPU + off-CPU)"); set for profiles
   * with off-CPU time, where the bare type names are easy to confuse. Without it the page
   * shows "type (unit)".
   */
  sampleTypes: { type: string; unit: string; label?: string }[];
  defaultType: number;
  /** Unique strings: function names, files, process labels. */
  strings: string[];
  /** Five numbers per function: name string, file string (-1 none), line (0 unknown), kind code, inlined (0/1). */
  funcs: number[];
  comments: string[];
  /** Decimal strings: nanosecond counts exceed 2^53 as numbers of the epoch. */
  timeNanos: string;
  durationNanos: string;
  period: number;
  periodType: { type: string; unit: string };
}

export interface FlameTree {
  meta: FlameMeta;
  /** Nodes in preorder, children sorted by name. */
  depth: Uint32Array;
  func: Uint32Array;
  /** Self value per sample type, per node: self[type][node]. */
  self: Float64Array[];
}

class Interner {
  readonly list: string[] = [];
  private readonly index = new Map<string, number>();
  id(s: string): number {
    let i = this.index.get(s);
    if (i === undefined) {
      i = this.list.length;
      this.list.push(s);
      this.index.set(s, i);
    }
    return i;
  }
}

function kindCode(kind: FrameKind | string): number {
  const i = KIND_CODES.indexOf(kind);
  return i < 0 || i >= KIND_PROCESS ? KIND_CODES.indexOf('unknown') : i;
}

/** The label a sample's process is shown under: its name (process, else executable, else thread) and pid. */
export function processLabel(labels: Record<string, string>, numLabels: Record<string, number>): string {
  const name = labels['process.name'] || labels['process.executable.name'] || labels['thread.name'] || '';
  const pid = numLabels['process.pid'];
  if (pid !== undefined && name) return `${name} [${pid}]`;
  if (pid !== undefined) return `pid ${pid}`;
  return name || '[unknown process]';
}

/** Values must be non-negative integers for the varint encoding; pprof diffs can be negative. */
function cleanValue(v: number | undefined): number {
  if (v === undefined || !Number.isFinite(v) || v <= 0) return 0;
  return Math.min(Math.round(v), Number.MAX_SAFE_INTEGER);
}

export function buildFlameTree(profile: Profile, title: string, defaultType: number): FlameTree {
  const nTypes = profile.sampleTypes.length;
  const strings = new Interner();
  const funcs: number[] = [];
  const funcIndex = new Map<string, number>();
  const addFunc = (name: string, file: string | undefined, line: number, kind: number, inlined: boolean): number => {
    const key = `${kind}\u0000${inlined ? 1 : 0}\u0000${file ?? ''}\u0000${name}`;
    let f = funcIndex.get(key);
    if (f === undefined) {
      f = funcs.length / 5;
      funcs.push(strings.id(name), file ? strings.id(file) : -1, line, kind, inlined ? 1 : 0);
      funcIndex.set(key, f);
    } else if (funcs[f * 5 + 2] !== line) {
      funcs[f * 5 + 2] = 0;
    }
    return f;
  };

  const rootFunc = addFunc('all', undefined, 0, KIND_ROOT, false);
  // Profile frame index → function; built lazily so unreferenced frames cost nothing.
  const frameFunc = new Int32Array(profile.frames.length).fill(-1);
  const funcOfFrame = (fi: number): number => {
    if (!Number.isInteger(fi) || fi < 0 || fi >= profile.frames.length) {
      return addFunc('[bad frame index]', undefined, 0, kindCode('unknown'), false);
    }
    let f = frameFunc[fi]!;
    if (f < 0) {
      const fr = profile.frames[fi]!;
      f = addFunc(fr.name || '[unknown]', fr.file || undefined, fr.line ?? 0, kindCode(fr.kind), fr.inlined === true);
      frameFunc[fi] = f;
    }
    return f;
  };

  const nodes = new NodeTable(nTypes);
  nodes.add(-1, rootFunc);
  for (const sample of profile.samples) {
    const proc = processLabel(sample.labels ?? {}, sample.numLabels ?? {});
    let node = nodes.childOf(0, addFunc(proc, undefined, 0, KIND_PROCESS, false));
    const stack = sample.stack ?? [];
    for (let i = stack.length - 1; i >= 0; i--) node = nodes.childOf(node, funcOfFrame(stack[i]!));
    for (let t = 0; t < nTypes; t++) nodes.self[t]![node]! += cleanValue(sample.values?.[t]);
  }

  // Children sorted by name (then kind) so the layout is stable: rank the functions once, then
  // group nodes by parent with two stable counting sorts (by rank, then by parent).
  const nFuncs = funcs.length / 5;
  const byName = Array.from({ length: nFuncs }, (_, f) => f).sort((a, b) => {
    const na = strings.list[funcs[a * 5]!]!;
    const nb = strings.list[funcs[b * 5]!]!;
    return na < nb ? -1 : na > nb ? 1 : funcs[a * 5 + 3]! - funcs[b * 5 + 3]!;
  });
  const rank = new Uint32Array(nFuncs);
  byName.forEach((f, r) => { rank[f] = r; });
  const n = nodes.count;
  const nodeParent = nodes.parent;
  const nodeFunc = nodes.func;
  const byRank = countingSort(n, nFuncs, (i) => rank[nodeFunc[i]!]!, null);
  // Slot 0 holds the root's (absent) parent; children of p land in [first[p+1], first[p+2]).
  const grouped = countingSort(n, n + 1, (i) => nodeParent[i]! + 1, byRank);
  const first = new Uint32Array(n + 2);
  for (let i = 0; i < n; i++) first[nodeParent[i]! + 2]!++;
  for (let k = 1; k < n + 2; k++) first[k]! += first[k - 1]!;

  // Preorder walk with an explicit stack: one pass, no per-node arrays.
  const depthOut = new Uint32Array(n);
  const funcOut = new Uint32Array(n);
  const order = new Uint32Array(n);
  const stackNode = new Int32Array(n);
  const stackDepth = new Int32Array(n);
  let sp = 0;
  let out = 0;
  stackNode[sp] = 0;
  stackDepth[sp++] = 0;
  while (sp > 0) {
    const node = stackNode[--sp]!;
    const d = stackDepth[sp]!;
    order[out] = node;
    depthOut[out] = d;
    funcOut[out++] = nodeFunc[node]!;
    for (let k = first[node + 2]! - 1; k >= first[node + 1]!; k--) {
      stackNode[sp] = grouped[k]!;
      stackDepth[sp++] = d + 1;
    }
  }

  const labelled = hasOffCpu(profile);
  return {
    meta: {
      title,
      sampleTypes: profile.sampleTypes.map((s, t) => (labelled ? { type: s.type, unit: s.unit, label: sampleTypeLabel(profile, t) } : { type: s.type, unit: s.unit })),
      defaultType,
      strings: strings.list,
      funcs,
      comments: profile.comments ?? [],
      timeNanos: String(profile.timeNanos ?? 0n),
      durationNanos: String(profile.durationNanos ?? 0n),
      period: profile.period ?? 0,
      periodType: { type: profile.periodType?.type ?? '', unit: profile.periodType?.unit ?? '' },
    },
    depth: depthOut,
    func: funcOut,
    self: nodes.self.map((col) => {
      const sorted = new Float64Array(n);
      for (let k = 0; k < n; k++) sorted[k] = col[order[k]!]!;
      return sorted;
    }),
  };
}

/** Stable counting sort of 0..n-1 (or of `input`'s order) by an integer key below `keys`. */
function countingSort(n: number, keys: number, key: (i: number) => number, input: Uint32Array | null): Uint32Array {
  const count = new Uint32Array(keys + 1);
  for (let i = 0; i < n; i++) count[key(i) + 1]!++;
  for (let k = 1; k <= keys; k++) count[k]! += count[k - 1]!;
  const out = new Uint32Array(n);
  for (let j = 0; j < n; j++) {
    const i = input ? input[j]! : j;
    out[count[key(i)]!++] = i;
  }
  return out;
}

/**
 * The call tree while it is built: parallel typed arrays, and an open-addressing hash from
 * (parent, function) to child, because a Map with a million composite keys is several times
 * slower and allocates per entry.
 */
class NodeTable {
  count = 0;
  parent = new Int32Array(1024);
  func = new Int32Array(1024);
  self: Float64Array[];
  private slots = new Int32Array(2048).fill(-1);
  constructor(nTypes: number) {
    this.self = Array.from({ length: nTypes }, () => new Float64Array(1024));
  }

  add(parent: number, func: number): number {
    if (this.count === this.parent.length) this.grow();
    const i = this.count++;
    this.parent[i] = parent;
    this.func[i] = func;
    return i;
  }

  childOf(parent: number, func: number): number {
    const mask = this.slots.length - 1;
    let h = this.hash(parent, func) & mask;
    for (;;) {
      const s = this.slots[h]!;
      if (s < 0) break;
      if (this.parent[s] === parent && this.func[s] === func) return s;
      h = (h + 1) & mask;
    }
    const i = this.add(parent, func);
    this.slots[h] = i;
    if (this.count * 2 > this.slots.length) this.rehash();
    return i;
  }

  private hash(parent: number, func: number): number {
    return (Math.imul(parent, 0x9e3779b1) ^ Math.imul(func + 0x7f4a7c15, 0x85ebca6b)) >>> 0;
  }

  private grow(): void {
    const size = this.parent.length * 2;
    const p = new Int32Array(size);
    p.set(this.parent);
    this.parent = p;
    const f = new Int32Array(size);
    f.set(this.func);
    this.func = f;
    this.self = this.self.map((col) => {
      const c = new Float64Array(size);
      c.set(col);
      return c;
    });
  }

  private rehash(): void {
    const slots = new Int32Array(this.slots.length * 2).fill(-1);
    const mask = slots.length - 1;
    for (let i = 0; i < this.count; i++) {
      if (this.parent[i]! < 0) continue;
      let h = this.hash(this.parent[i]!, this.func[i]!) & mask;
      while (slots[h]! >= 0) h = (h + 1) & mask;
      slots[h] = i;
    }
    this.slots = slots;
  }
}

/** Unsigned LEB128 for numbers up to 2^53 (division, not bit operations, past 32 bits). */
class VarintWriter {
  private buf = Buffer.alloc(1 << 16);
  private pos = 0;
  private room(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const next = Buffer.alloc(Math.max(this.buf.length * 2, this.pos + n));
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }
  uint(v: number): void {
    this.room(8);
    while (v >= 0x80) {
      this.buf[this.pos++] = (v % 0x80) | 0x80;
      v = Math.floor(v / 0x80);
    }
    this.buf[this.pos++] = v;
  }
  bytes(b: Uint8Array): void {
    this.room(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }
  done(): Buffer {
    return this.buf.subarray(0, this.pos);
  }
}

/**
 * Layout before gzip: magic, varint JSON length, JSON (FlameMeta), varint node count, then
 * columns of varints: depth for every node, function for every node, and one self-value column
 * per sample type. Columns compress far better than rows: depths and zero self values repeat.
 */
export function encodeFlameTree(tree: FlameTree): Buffer {
  const w = new VarintWriter();
  w.bytes(Buffer.from(PAYLOAD_MAGIC, 'latin1'));
  const json = Buffer.from(JSON.stringify(tree.meta), 'utf8');
  w.uint(json.length);
  w.bytes(json);
  w.uint(tree.depth.length);
  for (const d of tree.depth) w.uint(d);
  for (const f of tree.func) w.uint(f);
  for (const col of tree.self) for (const v of col) w.uint(v);
  return gzipSync(w.done(), { level: 6 });
}
