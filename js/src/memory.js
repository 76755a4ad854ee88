// Breaker state in this process's memory. Breakers given the same
// MemoryStorage share their state.

/**
 * A versioned register per key, in memory. The storage interface a user can
 * implement has the same two methods (and may leave out `peekVersion`):
 * - `load(key)` returns `undefined` or `{ version, data }` (data a Uint8Array);
 * - `compareAndSwap(key, expected, data)` writes if the key's version is
 *   `expected` (`undefined`: the key must be absent) and returns
 *   `{ written: newVersion }`, or else `{ conflict: currentEntryOrUndefined }`.
 * Versions are numbers that grow with every write to a key and never repeat,
 * even after the key is deleted (breakers reuse answers while a version
 * stays). `load` and `compareAndSwap` may instead return promises of the
 * same (a storage over a network client); `peekVersion`, if there, answers
 * at once, without I/O. Memory answers at once, so a healthy call costs no
 * promise turn of the breaker's.
 */
export class MemoryStorage {
  #entries = new Map();
  /** The last version handed out to any key. */
  #last = 0;

  load(key) {
    const entry = this.#entries.get(key);
    return entry && { version: entry.version, data: entry.data.slice() };
  }

  compareAndSwap(key, expected, data) {
    const entry = this.#entries.get(key);
    if ((entry?.version) !== expected) {
      return { conflict: entry && { version: entry.version, data: entry.data.slice() } };
    }
    const version = ++this.#last;
    this.#entries.set(key, { version, data: Uint8Array.from(data) });
    return { written: version };
  }

  /** The key's version (0: absent), so a breaker can skip reloading what it holds. */
  peekVersion(key) {
    return this.#entries.get(key)?.version ?? 0;
  }

  /** The keys stored, sorted. */
  keys() {
    return [...this.#entries.keys()].sort();
  }

  /** Removes a key (for tests and repairs); true if it was there. */
  delete(key) {
    return this.#entries.delete(key);
  }
}
