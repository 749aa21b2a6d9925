// The wait reasons and goroutine statuses must be Go's own, for every supported release: each
// toolchain's src/runtime/runtime2.go is parsed (the `waitReason = iota` const block gives the
// values, the waitReasonStrings literal their text; the `_Gidle = iota` block the statuses) and
// so is traceback.go (gStatusStrings, how tracebacks name a status).

import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  G_COPYSTACK,
  G_DEAD,
  G_DEADEXTRA,
  G_IDLE,
  G_LEAKED,
  G_PREEMPTED,
  G_RUNNABLE,
  G_RUNNING,
  G_SCAN,
  G_SYSCALL,
  G_WAITING,
  goStatusName,
  goWaitReasonName,
  goWaitReasons,
} from '../src/go/wait-reasons.js';
import { GO_MAX_MINOR, GO_MIN_MINOR, parseGoVersion } from '../src/go/runtime-offsets.js';
import { execAsync, GO_RELEASES, pool } from './helpers.js';


/** The lines of the parenthesized block of `src` that contains `marker`, comments removed. */
function block(src: string, marker: string, open: string, close: string): string[] {
  const at = src.indexOf(marker);
  assert.ok(at >= 0, `no ${marker}`);
  const start = src.lastIndexOf(open, at) + open.length;
  const end = src.indexOf(close, at);
  return src
    .slice(start, end)
    .split('\n')
    .map((l) => l.replace(/\/\/.*$/, '').trim())
    .filter(Boolean);
}

/** The names of a `X = iota` const block in order, and the values of those set explicitly. */
function constBlock(src: string, marker: string): { names: string[]; explicit: Map<string, string> } {
  const names: string[] = [];
  const explicit = new Map<string, string>();
  for (const l of block(src, marker, 'const (', '\n)')) {
    const m = /^(\w+)(?:\s+\w+)?(?:\s*=\s*(.+))?$/.exec(l);
    assert.ok(m, `cannot read const line: ${l}`);
    names.push(m[1]);
    if (m[2] !== undefined && !/\biota\b/.test(m[2])) explicit.set(m[1], m[2].trim());
  }
  return { names, explicit };
}

/** `key: "text",` entries of a composite literal. */
function literal(src: string, marker: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const l of block(src, marker, marker, '\n}')) {
    const m = /^(\w+):\s*"((?:[^"\\]|\\.)*)",?$/.exec(l);
    assert.ok(m, `cannot read literal line: ${l}`);
    out.set(m[1], JSON.parse(`"${m[2]}"`) as string);
  }
  return out;
}

interface Parsed {
  release: string;
  minor: number;
  reasons: string[];
  /** Status constant → value, for those counted by iota or given as a number. */
  statuses: Map<string, number>;
  statusNames: Map<string, string>;
}

function parseRuntime(release: string, goroot: string): Parsed {
  const runtime2 = readFileSync(join(goroot, 'src', 'runtime', 'runtime2.go'), 'utf8');
  const traceback = readFileSync(join(goroot, 'src', 'runtime', 'traceback.go'), 'utf8');
  const enumBlock = constBlock(runtime2, 'waitReason = iota');
  assert.equal(enumBlock.explicit.size, 0, `${release}: a wait reason with an explicit value`);
  const strings = literal(runtime2, 'var waitReasonStrings = [...]string{');
  assert.deepEqual([...strings.keys()].sort(), [...enumBlock.names].sort(), `${release}: waitReasonStrings names other reasons than the enum`);
  const st = constBlock(runtime2, '_Gidle = iota');
  // A spec without `= expr` repeats the one before: iota counts on only after `= iota`.
  const statuses = new Map<string, number>();
  let counting = false;
  st.names.forEach((n, i) => {
    const e = st.explicit.get(n);
    if (e === undefined) {
      counting ||= i === 0;
      if (counting) statuses.set(n, i);
    } else {
      counting = false;
      if (/^0x[0-9a-f]+$|^\d+$/i.test(e)) statuses.set(n, Number(e));
    }
  });
  return {
    release,
    minor: parseGoVersion(release)!.minor,
    reasons: enumBlock.names.map((n) => strings.get(n)!),
    statuses,
    statusNames: literal(traceback, 'var gStatusStrings = [...]string{'),
  };
}

describe('wait-reasons', () => {
  const parsed: Parsed[] = [];

  before(async () => {
    const local = (await execAsync('go', ['env', 'GOVERSION'], { env: { GOTOOLCHAIN: 'local' } })).trim().replace(/^go/, '');
    const all = [...new Set([...GO_RELEASES, local])];
    const roots = await pool(3, all.map((r) => () => execAsync('go', ['env', 'GOROOT'], { env: { GOTOOLCHAIN: r === local ? 'local' : `go${r}` } })));
    all.forEach((r, i) => parsed.push(parseRuntime(r, roots[i].trim())));
  });

  it('has every release\'s waitReasonStrings in enum order', () => {
    const minors = new Set<number>();
    for (const p of parsed) {
      if (p.minor < GO_MIN_MINOR || p.minor > GO_MAX_MINOR) continue;
      assert.deepEqual(goWaitReasons(p.minor), p.reasons, `go${p.release}`);
      minors.add(p.minor);
    }
    for (let m = GO_MIN_MINOR; m <= GO_MAX_MINOR; m++) assert.ok(minors.has(m), `1.${m} not checked`);
    assert.equal(goWaitReasons(GO_MIN_MINOR - 1), undefined);
    assert.equal(goWaitReasons(GO_MAX_MINOR + 1), undefined);
  });

  it('shares one array between releases whose enums agree, and no two arrays are alike', () => {
    const arrays = new Map<string, readonly string[]>();
    for (let m = GO_MIN_MINOR; m <= GO_MAX_MINOR; m++) {
      const a = goWaitReasons(m)!;
      const key = JSON.stringify(a);
      if (arrays.has(key)) assert.equal(a, arrays.get(key), `1.${m} repeats an array`);
      else arrays.set(key, a);
      assert.ok(Object.isFrozen(a));
    }
  });

  it('names a wait reason by its value', () => {
    // The value a goroutine in `<-ch` holds moved in 1.26.
    assert.equal(goWaitReasonName(21, 14), 'chan receive');
    assert.equal(goWaitReasonName(26, 19), 'chan receive');
    assert.equal(goWaitReasonName(27, 0), '');
    assert.equal(goWaitReasonName(27, 200), undefined);
    assert.equal(goWaitReasonName(20, 1), undefined);
  });

  it('has the status values of every release', () => {
    const ours: Record<string, number> = {
      _Gidle: G_IDLE,
      _Grunnable: G_RUNNABLE,
      _Grunning: G_RUNNING,
      _Gsyscall: G_SYSCALL,
      _Gwaiting: G_WAITING,
      _Gdead: G_DEAD,
      _Gcopystack: G_COPYSTACK,
      _Gpreempted: G_PREEMPTED,
      _Gleaked: G_LEAKED,
      _Gdeadextra: G_DEADEXTRA,
      _Gscan: G_SCAN,
    };
    for (const p of parsed) {
      for (const [name, value] of Object.entries(ours)) {
        const since = name === '_Gleaked' || name === '_Gdeadextra' ? 26 : GO_MIN_MINOR;
        if (p.minor < since) assert.equal(p.statuses.get(name), undefined, `go${p.release}: ${name} is new`);
        else assert.equal(p.statuses.get(name), value, `go${p.release}: ${name}`);
      }
    }
  });

  it('names statuses as Go\'s tracebacks do, with " (scan)" for the scan bit', () => {
    for (const p of parsed) {
      for (const [name, text] of p.statusNames) assert.equal(goStatusName(p.statuses.get(name)!), text, `go${p.release}: ${name}`);
    }
    assert.equal(goStatusName(G_WAITING | G_SCAN), 'waiting (scan)');
    assert.equal(goStatusName(G_RUNNABLE), 'runnable');
    assert.equal(goStatusName(5), 'status 5');
  });
});
