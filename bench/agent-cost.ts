// The agent's own footprint over a long run of whole-machine profiling at its default 19 Hz and
// 15 s windows: peak RSS (VmHWM) and CPU time (utime + stime of the agent process, all its
// threads: reader, walker, symbolizer worker) per second of wall time. Once with the backend up
// (a loopback OTLP/HTTP server in this process answering 200) and once with it down (nothing
// listening: every window waits in the queue and is retried), and once with the backend up under
// churn: short-lived processes of several runtimes (shell, python3, node, gzip) start and exit
// all the time, each one new to the agent (its maps, its files' unwind tables). Prints nothing.

import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { peakRssKb, processCpu } from './proc.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const cli = join(root, 'dist', 'src', 'cli.js');

export type AgentScenario = 'up' | 'down' | 'churn';

export interface AgentCost {
  backend: AgentScenario;
  seconds: number;
  peakRssMb: number;
  /** CPU time of the agent process over its wall time (1 = one core). */
  cpuShare: number;
  windowsSent: number;
  queuedBytes: number;
  retries: number;
}

/** Starts one short-lived process of a runtime picked in turn, every `everyMs`; returns a stop. */
function churn(everyMs: number): () => void {
  const jobs: Array<[string, string[]]> = [
    ['sh', ['-c', 'i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done']],
    ['python3', ['-c', 'sum(i * i for i in range(300000))']],
    [process.execPath, ['-e', 'let s = 0; for (let i = 0; i < 3e6; i++) s += i;']],
    ['sh', ['-c', `gzip -6 -c ${process.execPath} > /dev/null`]],
  ];
  let n = 0;
  const tick = setInterval(() => {
    const [cmd, args] = jobs[n++ % jobs.length]!;
    spawn(cmd, args, { stdio: 'ignore' }).on('error', () => {});
  }, everyMs);
  return () => clearInterval(tick);
}

export async function measureAgent(backend: AgentScenario, seconds: number): Promise<AgentCost> {
  let windows = 0;
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      windows++;
      res.writeHead(200, { 'content-type': 'application/x-protobuf' });
      res.end();
    });
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  const port = (server.address() as AddressInfo).port;
  if (backend === 'down') await new Promise<void>((ok) => server.close(() => ok()));
  // Run as installed: through the #! line, whose node flags are part of the footprint.
  const child = spawn(cli, ['agent', '--otlp-protocol', 'http/protobuf', '--otlp-endpoint', `http://127.0.0.1:${port}`, '--log-level', 'warn'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d) => (out += String(d)));
  const closed = new Promise<void>((ok) => child.once('close', () => ok()));
  try {
    // The start-up (BPF load, the first window's symbolizer) is part of the footprint.
    const t0 = Date.now();
    const c0 = processCpu(child.pid!);
    const stopChurn = backend === 'churn' ? churn(250) : undefined;
    await new Promise((r) => setTimeout(r, seconds * 1000));
    stopChurn?.();
    const cpu = processCpu(child.pid!) - c0;
    const wall = (Date.now() - t0) / 1000;
    const peak = peakRssKb(child.pid!);
    child.kill('SIGTERM');
    await closed;
    // --log-level warn: only the failures; the stop summary is at info. Count from the server.
    const failures = out.split('\n').filter((l) => l.includes('export failed')).length;
    return { backend, seconds, peakRssMb: peak / 1024, cpuShare: cpu / wall, windowsSent: windows, queuedBytes: 0, retries: failures };
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
    if (backend !== 'down') server.close();
  }
}
