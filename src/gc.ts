// A full garbage collection between windows, when garbage has piled up outside the JS heap. V8
// collects its old generation when that heap grows; an agent's JS heap barely grows from one
// window to the next, so the ArrayBuffers it has dropped (parsed tables, decoded batches, the
// scratch of a kallsyms load) stayed allocated for minutes: ~10 MB of resident memory held by
// garbage. A full collection costs 10-20 ms, so it runs only when the buffers held have grown
// by more than SLACK since the last one. The `flamewire` #! line passes --expose-gc; run any
// other way (node dist/src/cli.js) this does nothing.

const SLACK = 2 << 20;
/** ArrayBuffer bytes held right after this thread's last collection (-1: none yet). */
let settled = -1;

/**
 * Collects garbage now if this thread's ArrayBuffers grew by more than 2 MiB since its last
 * collection (or it never collected). Returns whether it collected.
 */
export function collectGarbage(): boolean {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) return false;
  if (settled >= 0 && process.memoryUsage().arrayBuffers <= settled + SLACK) return false;
  gc();
  settled = process.memoryUsage().arrayBuffers;
  return true;
}
