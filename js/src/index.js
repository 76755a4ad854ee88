// tripswitch for JavaScript: the breaker component, transpiled by jco, behind
// an API in the manner of opossum. Every decision and every default is the
// component's; this file checks options, converts numbers, and tells events.

import { breaker as component } from '../dist/tripswitch.js';
import { current } from './host/call.js';
import { MemoryStorage } from './memory.js';

export { MemoryStorage } from './memory.js';

/** The states a breaker can be in. */
export const STATES = Object.freeze(['closed', 'open', 'half-open', 'forced-open', 'disabled']);

const EVENT_OF_STATE = { open: 'open', 'half-open': 'halfOpen', closed: 'close' };
/** The component's field names, as this package's options call them. */
const OPTION_OF_FIELD = {
  'fail-max': 'failMax',
  'reset-timeout-ms': 'resetTimeout',
  'success-threshold': 'successThreshold',
  'half-open-max-calls': 'halfOpenMaxCalls',
  'trial-timeout-ms': 'trialTimeout',
  'fallback-state': 'fallbackState',
};
const MAX_U32 = 2 ** 32 - 1;

/** Thrown (or rejected with) when the breaker does not let a call run. */
export class CircuitOpenError extends Error {
  /**
   * @param {string} breaker
   * @param {{tag: string, val?: bigint | string}} rejection
   */
  constructor(breaker, rejection) {
    const retryAfterMs = typeof rejection.val === 'bigint' ? Number(rejection.val) : undefined;
    const why = {
      open: `circuit open; retry after ${retryAfterMs} ms`,
      'half-open-full': `circuit half-open and every trial slot is taken; retry after ${retryAfterMs} ms`,
      'forced-open': 'circuit forced open by an operator',
      'storage-unavailable': `storage unavailable and the fallback state rejects: ${rejection.val}`,
    }[rejection.tag];
    super(`breaker "${breaker}": ${why}`);
    this.name = 'CircuitOpenError';
    /** The breaker's name. */
    this.breaker = breaker;
    /** Why: 'open', 'half-open-full', 'forced-open' or 'storage-unavailable'. */
    this.reason = rejection.tag;
    /** The state that rejected the call. */
    this.state = { open: 'open', 'half-open-full': 'half-open', 'forced-open': 'forced-open' }[rejection.tag] ?? 'open';
    /** Milliseconds until a call can be admitted, when that is known. */
    this.retryAfterMs = retryAfterMs;
  }
}

/**
 * The payload of a result's err, which the transpiled component throws as it
 * is; an Error (a trap) goes on as it is.
 */
function payload(thrown) {
  if (thrown instanceof Error) throw thrown;
  return thrown;
}

// ---- option checks: every bad option is named before the component sees it

function count(options, key, name) {
  const value = options[key];
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value)) {
    throw new TypeError(`${name}: ${key} must be a whole number, got ${describe(value)}`);
  }
  if (value < 1 || value > MAX_U32) {
    throw new RangeError(`${name}: ${key} must be from 1 to ${MAX_U32}, got ${value}`);
  }
  return value;
}

function millis(options, key, name) {
  const value = options[key];
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || Number.isNaN(value)) {
    throw new TypeError(`${name}: ${key} must be a number of milliseconds, got ${describe(value)}`);
  }
  if (!Number.isInteger(value) || value < 1 || value > Number.MAX_SAFE_INTEGER) {
    throw new RangeError(`${name}: ${key} must be a whole number of milliseconds from 1, got ${value}`);
  }
  return BigInt(value);
}

function describe(value) {
  return typeof value === 'string' ? JSON.stringify(value) : `${value} (${typeof value})`;
}

const KNOWN_OPTIONS = new Set([
  'failMax', 'resetTimeout', 'successThreshold', 'halfOpenMaxCalls', 'trialTimeout',
  'fallbackState', 'exclude', 'storage', 'clock', 'signal',
]);

function checkOptions(name, options) {
  if (typeof name !== 'string') throw new TypeError(`a breaker's name must be a string, got ${describe(name)}`);
  if (options === null || typeof options !== 'object') {
    throw new TypeError(`${name}: options must be an object, got ${describe(options)}`);
  }
  for (const key of Object.keys(options)) {
    if (!KNOWN_OPTIONS.has(key)) {
      throw new TypeError(`${name}: unknown option ${JSON.stringify(key)} (known: ${[...KNOWN_OPTIONS].join(', ')})`);
    }
  }
  const fallbackState = options.fallbackState;
  if (fallbackState !== undefined && !STATES.includes(fallbackState)) {
    throw new RangeError(`${name}: fallbackState must be one of ${STATES.join(', ')}, got ${describe(fallbackState)}`);
  }
  const storage = options.storage ?? new MemoryStorage();
  if (typeof storage.load !== 'function' || typeof storage.compareAndSwap !== 'function') {
    throw new TypeError(`${name}: storage must have load(key) and compareAndSwap(key, expected, data) methods`);
  }
  const clock = options.clock ?? Date.now;
  if (typeof clock !== 'function') throw new TypeError(`${name}: clock must be a function returning Unix ms`);
  const exclude = [options.exclude ?? []].flat();
  for (const rule of exclude) {
    if (typeof rule !== 'function') {
      throw new TypeError(`${name}: exclude takes error classes or predicates, got ${describe(rule)}`);
    }
    const isClass = /^class\b/.test(Function.prototype.toString.call(rule));
    if (isClass && !(rule === Error || rule.prototype instanceof Error)) {
      throw new TypeError(`${name}: exclude: class ${rule.name} does not extend Error`);
    }
  }
  const signal = options.signal;
  if (signal !== undefined && !(signal instanceof AbortSignal)) {
    throw new TypeError(`${name}: signal must be an AbortSignal`);
  }
  return {
    config: {
      failMax: count(options, 'failMax', name),
      resetTimeoutMs: millis(options, 'resetTimeout', name),
      successThreshold: count(options, 'successThreshold', name),
      halfOpenMaxCalls: count(options, 'halfOpenMaxCalls', name),
      trialTimeoutMs: millis(options, 'trialTimeout', name),
      fallbackState,
    },
    storage,
    clock,
    exclude,
    signal,
  };
}

/** Whether an error matches an exclusion: an Error class, or a predicate. */
function excluded(rules, error) {
  return rules.some((rule) =>
    rule === Error || rule.prototype instanceof Error ? error instanceof rule : Boolean(rule(error)),
  );
}

/**
 * A circuit breaker. Events (an EventTarget): `stateChange`, `open`,
 * `halfOpen`, `close`, `success`, `failure`, `reject`; each a CustomEvent
 * whose `detail` says more.
 */
export class CircuitBreaker extends EventTarget {
  #name;
  #guest;
  #storage;
  #clock;
  #exclude;
  #signal;
  /** The state the listeners were last told. */
  #told = undefined;
  /** Whether the storage is failing, so that an outage is told once. */
  #outage = false;
  /**
   * The component's last answer while it holds: an admission it marked
   * reusable, or a rejection whose own terms bound it, given at `version`.
   * @type {{version: bigint, permit?: object, rejection?: object, untilMs?: number} | undefined}
   */
  #reusable = undefined;
  /** Event types that have ever had a listener (never shrinks, so no event is lost). */
  #heard = new Set();

  /**
   * @param {string} name The breaker's name: its key in the storage.
   * @param {object} [options] See the README: failMax, resetTimeout (ms),
   *   successThreshold, halfOpenMaxCalls, trialTimeout (ms), fallbackState,
   *   exclude, storage, clock, signal.
   */
  constructor(name, options = {}) {
    super();
    const checked = checkOptions(name, options);
    this.#name = name;
    this.#storage = checked.storage;
    this.#clock = checked.clock;
    this.#exclude = checked.exclude;
    this.#signal = checked.signal;
    try {
      this.#guest = component.CircuitBreaker.create(name, checked.config);
    } catch (error) {
      const [field, reason] = payload(error).val;
      throw new RangeError(`${name}: invalid ${OPTION_OF_FIELD[field] ?? field}: ${reason}`);
    }
  }

  /** The breaker's name. */
  get name() {
    return this.#name;
  }

  /** The effective state now: an open breaker whose timeout elapsed reads half-open. */
  get state() {
    return this.snapshot().state;
  }

  /** State, counters, opened-at, trials in flight, generation and retry-after, now. */
  snapshot() {
    const s = this.#enter((guest, now) => guest.snapshot(now));
    return {
      state: s.state,
      failures: s.failures,
      successes: s.successes,
      openedAtMs: s.openedAtMs === undefined ? undefined : Number(s.openedAtMs),
      trialsInFlight: s.trialsInFlight,
      generation: Number(s.generation),
      retryAfterMs: s.retryAfterMs === undefined ? undefined : Number(s.retryAfterMs),
    };
  }

  /**
   * Runs `fn(...args)` (sync or async) if the breaker admits it, and records
   * its result. Resolves to its value; rejects with its error, or with a
   * CircuitOpenError when the call is not admitted.
   */
  async call(fn, ...args) {
    return this.#run(this.#signal, fn, args);
  }

  /** Like `call`, but a call in flight when `signal` aborts records `ignored`. */
  async callWithSignal(signal, fn, ...args) {
    if (!(signal instanceof AbortSignal)) throw new TypeError(`${this.#name}: signal must be an AbortSignal`);
    return this.#run(signal, fn, args);
  }

  /** A function that calls `fn` through this breaker. */
  wrap(fn) {
    if (typeof fn !== 'function') throw new TypeError(`${this.#name}: wrap takes a function`);
    return (...args) => this.call(fn, ...args);
  }

  /** Operator: opens the circuit now. */
  open() {
    this.#enter((guest, now) => guest.open(now));
  }

  /** Operator: closes the circuit and resets its counters. */
  close() {
    this.#enter((guest, now) => guest.close(now));
  }

  /** Operator: moves the circuit to half-open. */
  halfOpen() {
    this.#enter((guest, now) => guest.halfOpen(now));
  }

  /** Operator: rejects every call until another operator action. */
  forceOpen() {
    this.#enter((guest, now) => guest.forceOpen(now));
  }

  /** Operator: admits every call and records nothing. */
  disable() {
    this.#enter((guest, now) => guest.disable(now));
  }

  /**
   * Asks for a permit; returns `{ trial, report(outcome) }` where outcome is
   * 'success', 'failure' or 'ignored'. Throws CircuitOpenError when rejected.
   */
  acquire() {
    const permit = this.#acquire();
    let reported = false;
    return {
      trial: permit.trial,
      report: (outcome) => {
        if (reported) throw new Error(`${this.#name}: this permit was reported already`);
        if (!['success', 'failure', 'ignored'].includes(outcome)) {
          throw new RangeError(`${this.#name}: outcome must be success, failure or ignored, got ${describe(outcome)}`);
        }
        reported = true;
        return this.#report(permit, outcome);
      },
    };
  }

  async #run(signal, fn, args) {
    if (typeof fn !== 'function') throw new TypeError(`${this.#name}: call takes a function`);
    signal?.throwIfAborted();
    const permit = this.#acquire();
    let reported = false;
    const report = (outcome) => {
      if (!reported) {
        reported = true;
        this.#reportQuietly(permit, outcome);
      }
    };
    // An abort records `ignored` at once (freeing a trial slot); the late
    // result then counts nothing.
    const onAbort = () => report('ignored');
    signal?.addEventListener('abort', onAbort, { once: true });
    let result;
    try {
      result = { value: await fn(...args) };
    } catch (error) {
      result = { error };
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
    report(this.#classify(result));
    if ('error' in result) throw result.error;
    return result.value;
  }

  /** What a result counts as: an excluded error is a success; a broken exclusion, a failure. */
  #classify(result) {
    if (!('error' in result)) return 'success';
    try {
      return excluded(this.#exclude, result.error) ? 'success' : 'failure';
    } catch (error) {
      this.#emit('error', { error });
      return 'failure';
    }
  }

  /** Reports a finished call; a failure to record it goes to listeners, not to the caller. */
  #reportQuietly(permit, outcome) {
    try {
      this.#report(permit, outcome);
    } catch (error) {
      // A storage outage is told once, when it starts.
      if (!this.#outage) this.#emit('error', { error });
    }
  }

  #acquire() {
    let peek = typeof this.#storage.peekVersion === 'function';
    let version;
    try {
      version = peek ? BigInt(this.#storage.peekVersion(this.#name)) : undefined;
    } catch {
      // The component asks the storage itself, and follows the fallback if it fails.
      peek = false;
    }
    const reused = peek ? this.#reuse(version) : undefined;
    if (reused?.permit) return reused.permit;
    let permit;
    let askedAt;
    try {
      if (reused?.rejection) throw new RejectedCall(reused.rejection);
      permit = this.#enter((guest, now) => {
        askedAt = Number(now);
        return peek ? guest.acquireAtVersion(now, version || undefined) : guest.acquire(now);
      });
      this.#reusable = peek && permit.reusable ? { version, permit } : undefined;
    } catch (error) {
      if (!(error instanceof RejectedCall)) throw error;
      if (peek && !reused) this.#keepRejection(version, error.rejection, askedAt);
      const rejected = new CircuitOpenError(this.#name, error.rejection);
      this.#emit('reject', { error: rejected });
      throw rejected;
    }
    return permit;
  }

  /**
   * The component's last answer again, if it still holds at `version` now:
   * an admission it marked reusable, or a rejection within its own terms.
   */
  #reuse(version) {
    const kept = this.#reusable;
    if (kept === undefined || kept.version !== version) return undefined;
    // A reusable permit is never a trial, so its issue time names no slot.
    if (kept.permit) return kept;
    const now = Math.floor(this.#clock());
    if (kept.untilMs === undefined) return { rejection: kept.rejection };
    if (now < kept.untilMs) return { rejection: { tag: kept.rejection.tag, val: BigInt(kept.untilMs - now) } };
    return undefined;
  }

  /** Keeps a rejection that holds while the version stays: forced open, or open or full until a time. */
  #keepRejection(version, rejection, now) {
    if (rejection.tag === 'forced-open') this.#reusable = { version, rejection };
    else if (rejection.tag === 'open' || rejection.tag === 'half-open-full') {
      this.#reusable = { version, rejection, untilMs: now + Number(rejection.val) };
    } else this.#reusable = undefined;
  }

  #report(permit, outcome) {
    if (outcome === 'success' && permit.quietSuccess && this.#unchangedSince(permit)) {
      this.#emit('success', {});
      return false;
    }
    let tripped = false;
    this.#enter(
      (guest, now) => guest.report(permit, outcome, now),
      (announced) => {
        tripped = announced.some((a) => !a.remote && a.current === 'open');
        if (outcome === 'failure') this.#emit('failure', { tripped });
      },
    );
    if (outcome === 'success') this.#emit('success', {});
    return tripped;
  }

  /** Whether the storage still holds the version a quiet success was decided on. */
  #unchangedSince(permit) {
    if (typeof this.#storage.peekVersion !== 'function') return true;
    return BigInt(this.#storage.peekVersion(this.#name)) === permit.seenVersion;
  }

  /**
   * Calls into the component with this breaker's storage and clock, then
   * tells the state changes it announced. `before` runs first with them
   * (pybreaker's order: failure, then state change).
   */
  #enter(call, before) {
    const now = BigInt(Math.floor(this.#clock()));
    current.storage = this.#storage;
    current.announced = [];
    current.storageError = null;
    current.storageOk = false;
    let answer;
    let thrown;
    try {
      answer = call(this.#guest, now);
    } catch (error) {
      thrown = error;
    } finally {
      current.storage = null;
    }
    const announced = current.announced;
    const storageError = current.storageError;
    before?.(announced);
    this.#tell(announced);
    if (storageError !== null && !this.#outage) {
      this.#outage = true;
      this.#emit('storageError', { message: storageError });
    } else if (storageError === null && current.storageOk) {
      this.#outage = false;
    }
    if (thrown !== undefined) {
      const value = payload(thrown);
      if (value && typeof value === 'object' && 'tag' in value) throw new RejectedCall(value);
      throw new Error(String(value));
    }
    return answer;
  }

  #tell(announced) {
    for (const change of announced) {
      const previous = this.#told ?? change.previous;
      this.#told = change.current;
      if (previous === change.current) continue;
      const detail = { previous, current: change.current, atMs: change.atMs, remote: change.remote };
      this.#emit('stateChange', detail);
      const named = EVENT_OF_STATE[change.current];
      if (named) this.#emit(named, detail);
    }
  }

  #emit(type, detail) {
    // Building an event costs more than a healthy call: build it only for a
    // type someone has ever listened to.
    if (this.#heard.has(type)) {
      this.dispatchEvent(new CustomEvent(type, { detail: { breaker: this.#name, ...detail } }));
    }
  }

  addEventListener(type, listener, options) {
    this.#heard.add(type);
    super.addEventListener(type, listener, options);
  }
}

/** A rejection on its way from the component to a CircuitOpenError (no Error: no stack to capture). */
class RejectedCall {
  constructor(rejection) {
    this.rejection = rejection;
  }
}
