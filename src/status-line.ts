// The live status line on a terminal: elapsed time, samples, drops, processes. Redrawn in place
// on stderr; nothing is printed when stderr is not a terminal.

import { formatDuration } from './duration.js';

export interface StatusFigures {
  elapsedMs: number;
  samples: number;
  drops: number;
  processes: number;
}

export class StatusLine {
  private timer: NodeJS.Timeout | undefined;
  private shown = false;

  constructor(
    private readonly read: () => StatusFigures,
    private readonly stream: NodeJS.WriteStream = process.stderr,
    private readonly intervalMs = 250,
  ) {}

  get enabled(): boolean {
    return this.stream.isTTY === true;
  }

  start(): void {
    if (!this.enabled) return;
    this.timer = setInterval(() => this.draw(), this.intervalMs);
    this.timer.unref();
  }

  draw(): void {
    const f = this.read();
    const text = formatStatus(f);
    const width = this.stream.columns ?? 80;
    this.stream.write('\r' + text.slice(0, width - 1) + '\x1b[K');
    this.shown = true;
  }

  /** Stops and clears the line so the summary starts on a clean line. */
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    if (this.shown) this.stream.write('\r\x1b[K');
    this.shown = false;
  }
}

export function formatStatus(f: StatusFigures): string {
  return `flamewire: recording ${formatDuration(f.elapsedMs)}  ${f.samples.toLocaleString('en-US')} samples  ${f.drops.toLocaleString('en-US')} dropped  ${f.processes} processes  (Ctrl-C to stop)`;
}
