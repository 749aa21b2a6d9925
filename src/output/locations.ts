// How a stack of model frames becomes machine locations, for every format that has them
// (pprof, OTLP): a location is one address, and inlined frames share the address of the
// function they were inlined into, so a run `inlined, inlined, …, physical` (leaf first) is ONE
// location whose lines are innermost first.

import type { Frame } from '../profile-model.js';

/** Thrown when the profile model is internally inconsistent (a bug upstream, not user input). */
export class ProfileModelError extends Error {
  override name = 'ProfileModelError';
}

/** The runs [from, to) of `stack` (frame indices, leaf first) that make one location each. */
export function locationRuns(stack: number[], frames: Frame[]): Array<[number, number]> {
  const runs: Array<[number, number]> = [];
  let k = 0;
  while (k < stack.length) {
    const from = k;
    // An inlined frame belongs with the frames outwards of it up to the first physical one.
    while (k < stack.length - 1 && frames[checkFrame(stack[k]!, frames.length)]!.inlined === true) k++;
    checkFrame(stack[k]!, frames.length);
    k++;
    runs.push([from, k]);
  }
  return runs;
}

function checkFrame(index: number, count: number): number {
  if (!(index >= 0 && index < count)) throw new ProfileModelError(`stack refers to frame ${index} of ${count}`);
  return index;
}
