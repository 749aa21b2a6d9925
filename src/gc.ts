// A full garbage collection on demand, for the agent between windows. V8 collects its old
// generation when that heap grows; an agent's JS heap barely grows from one window to the next,
// so the ArrayBuffers it has dropped (parsed tables, decoded batches, the scratch of a kallsyms
// load) stay allocated for minutes, ~10 MB of resident memory held by garbage. The `flamewire`
// #! line passes --expose-gc; run any other way (node dist/src/cli.js) this does nothing.

/** Collects garbage now. False when the process runs without --expose-gc. */
export function collectGarbage(): boolean {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) return false;
  gc();
  return true;
}
