// Runs one of the component's operations to its end over a breaker's
// storage: the component decides each step (read the key, write it by
// compare-and-swap, or done), this module performs it and passes back what
// the storage found, with numbers turned into BigInts and back.

/**
 * Steps one operation may take at most: the component's own bound with room
 * to spare. A component that asks for more is broken.
 */
const MAX_STEPS = 512;

function entry(found) {
  if (found === undefined || found === null) return undefined;
  if (!(found.data instanceof Uint8Array)) throw new TypeError('a storage entry\'s data must be a Uint8Array');
  return { version: BigInt(found.version), data: found.data };
}

function failed(error) {
  return { tag: 'failed', val: error instanceof Error ? error.message : String(error) };
}

/** What a load found, as the component takes it. */
function load(storage, key) {
  try {
    return { tag: 'read', val: entry(storage.load(key)) };
  } catch (error) {
    return failed(error);
  }
}

/** What a compare-and-swap did, as the component takes it. */
function compareAndSwap(storage, key, expected, data) {
  try {
    const result = storage.compareAndSwap(key, expected === undefined ? undefined : Number(expected), data.slice());
    if (result && 'written' in result) return { tag: 'swapped', val: { tag: 'written', val: BigInt(result.written) } };
    if (result && 'conflict' in result) return { tag: 'swapped', val: { tag: 'conflict', val: entry(result.conflict) } };
    throw new TypeError('compareAndSwap must return { written: version } or { conflict: entry | undefined }');
  } catch (error) {
    return failed(error);
  }
}

/**
 * Opens `request` on `guest` with what is `known` of the stored entry, and
 * performs each step against `storage` under `key`; returns the component's
 * `done` (its answer, the state changes it saw, when to flush).
 * @param {() => number} clock Unix ms
 */
export function run(guest, key, storage, clock, request, known = { tag: 'nothing' }) {
  const now = () => BigInt(Math.floor(clock()));
  let step = guest.open(request, known, now());
  for (let steps = 0; step.tag !== 'done'; steps += 1) {
    if (steps === MAX_STEPS) {
      guest.abandon(step.tag === 'read' ? step.val : step.val.operation);
      throw new Error(`breaker "${key}": the component asked for more than ${MAX_STEPS} steps in one operation`);
    }
    const [operation, found] = step.tag === 'read'
      ? [step.val, load(storage, key)]
      : [step.val.operation, compareAndSwap(storage, key, step.val.expected, step.val.data)];
    let at;
    try {
      at = now();
    } catch (error) {
      // The operation will not be finished: what it carried stays counted.
      guest.abandon(operation);
      throw error;
    }
    try {
      step = guest.resume(operation, found, at);
    } catch (refused) {
      throw new Error(`breaker "${key}": ${refused instanceof Error ? refused.message : String(refused)}`);
    }
  }
  return step.val;
}
