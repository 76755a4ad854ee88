// The component's `tripswitch:breaker/storage` import: the versioned
// register of the breaker being served, with numbers turned into BigInts.

import { current } from './call.js';

function failed(error) {
  return { tag: 'err', val: error instanceof Error ? error.message : String(error) };
}

function entry(found) {
  if (found === undefined || found === null) return undefined;
  if (!(found.data instanceof Uint8Array)) throw new TypeError('a storage entry\'s data must be a Uint8Array');
  return { version: BigInt(found.version), data: found.data };
}

/** @param {string} key */
export function load(key) {
  try {
    const found = entry(current.storage.load(key));
    return { tag: 'ok', val: found };
  } catch (error) {
    return failed(error);
  }
}

/**
 * @param {string} key
 * @param {bigint | undefined} expected
 * @param {Uint8Array} data
 */
export function compareAndSwap(key, expected, data) {
  try {
    const result = current.storage.compareAndSwap(
      key,
      expected === undefined ? undefined : Number(expected),
      data.slice(),
    );
    if (result && 'written' in result) return { tag: 'ok', val: { tag: 'written', val: BigInt(result.written) } };
    if (result && 'conflict' in result) return { tag: 'ok', val: { tag: 'conflict', val: entry(result.conflict) } };
    throw new TypeError('compareAndSwap must return { written: version } or { conflict: entry | undefined }');
  } catch (error) {
    return failed(error);
  }
}
