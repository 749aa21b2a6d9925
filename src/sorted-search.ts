// Binary search shared by the address tables (ELF symbols, kallsyms, perf maps, ...).

/** Index of the last element <= key in an ascending array, or -1 when every element is larger. */
export function lastAtOrBelow(sorted: ArrayLike<number>, key: number): number {
  let lo = 0;
  let hi = sorted.length - 1;
  let found = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid] <= key) {
      found = mid;
      lo = mid + 1;
    } else {
      hi = mid - 1;
    }
  }
  return found;
}
