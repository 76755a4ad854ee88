// Runs one of the component's operations to its end over a breaker's
// storage: the component decides each step (read the key, write it by
// compare-and-swap, or done), this module performs it and passes back what
// the storage found, with numbers turned into BigInts and back. A storage
// may answer at once or with a promise: the run stays synchronous until a
// step returns a promise, and from then on is a promise.

/**
 * Steps one operation may take at most: the component's own bound with room
 * to spare. A component that asks for more is broken.
 */
const MAX_STEPS = 512;

/** Whether `value` is a promise (or any thenable). */
export function isThenable(value) {
  return value !== null && (typeof value === 'object' || typeof value === 'function') && typeof value.then === 'function';
}

/** `then(value)`, at once for a plain value, after it settles for a promise. */
export function after(value, then) {
  return isThenable(value) ? value.then(then) : then(value);
}

function entry(found) {
  if (found === undefined || found === null) return undefined;
  if (!(found.data instanceof Uint8Array)) throw new TypeError('a storage entry\'s data must be a Uint8Array');
  return { version: BigInt(found.version), data: found.data };
}

function failed(error) {
  return { tag: 'failed', val: error instanceof Error ? error.message : String(error) };
}

/** What a load found, as the component takes it. */
function loaded(found) {
  return { tag: 'read', val: entry(found) };
}

/** What a compare-and-swap did, as the component takes it. */
function swapped(result) {
  if (result && 'written' in result) return { tag: 'swapped', val: { tag: 'written', val: BigInt(result.written) } };
  if (result && 'conflict' in result) return { tag: 'swapped', val: { tag: 'conflict', val: entry(result.conflict) } };
  throw new TypeError('compareAndSwap must return (or resolve to) { written: version } or { conflict: entry | undefined }');
}

/**
 * What the storage gave, converted by `convert`, or its failure; a promise
 * of it when the storage answered with one.
 */
function found(perform, convert) {
  const safely = (result) => {
    try {
      return convert(result);
    } catch (error) {
      return failed(error);
    }
  };
  try {
    const result = perform();
    return isThenable(result) ? Promise.resolve(result).then(safely, failed) : safely(result);
  } catch (error) {
    return failed(error);
  }
}

/**
 * Opens `request` on `guest` with what is `known` of the stored entry, and
 * performs each step against `storage` under `key`; returns the component's
 * `done` (its answer, the state changes it saw, when to flush), or a promise
 * of it once a step of the storage is a promise.
 * @param {() => number} clock Unix ms
 */
export function run(guest, key, storage, clock, request, known = { tag: 'nothing' }) {
  const now = () => BigInt(Math.floor(clock()));
  const resume = (operation, result) => {
    let at;
    try {
      at = now();
    } catch (error) {
      // The operation will not be finished: what it carried stays counted.
      guest.abandon(operation);
      throw error;
    }
    try {
      return guest.resume(operation, result, at);
    } catch (refused) {
      throw new Error(`breaker "${key}": ${refused instanceof Error ? refused.message : String(refused)}`);
    }
  };
  const go = (step, steps) => {
    for (; step.tag !== 'done'; steps += 1) {
      if (steps === MAX_STEPS) {
        guest.abandon(step.tag === 'read' ? step.val : step.val.operation);
        throw new Error(`breaker "${key}": the component asked for more than ${MAX_STEPS} steps in one operation`);
      }
      const [operation, result] = step.tag === 'read'
        ? [step.val, found(() => storage.load(key), loaded)]
        : [step.val.operation, found(() => storage.compareAndSwap(
          key, step.val.expected === undefined ? undefined : Number(step.val.expected), step.val.data.slice(),
        ), swapped)];
      if (isThenable(result)) {
        const next = steps + 1;
        return result.then((settled) => go(resume(operation, settled), next));
      }
      step = resume(operation, result);
    }
    return step.val;
  };
  return go(guest.open(request, known, now()), 0);
}
