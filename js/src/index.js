// tripswitch for JavaScript: the breaker component, transpiled by jco, behind
// an API in the manner of opossum. Every decision and every default is the
// component's; this file checks options, converts numbers, and tells events.

import { breaker as component } from '../dist/tripswitch.js';
import { MemoryStorage } from './memory.js';
import { after, isThenable, run } from './steps.js';

export { MemoryStorage } from './memory.js';

/** The states a breaker can be in. */
export const STATES = Object.freeze(['closed', 'open', 'half-open', 'forced-open', 'disabled']);
/** The operator actions, by method name. */
const ACTION_OF_METHOD = { open: 'open', close: 'close', halfOpen: 'half-open', forceOpen: 'force-open', disable: 'disable' };

const EVENT_OF_STATE = { open: 'open', 'half-open': 'halfOpen', closed: 'close' };
/** The counter in `stats` that each event adds one to. */
const STAT_OF_EVENT = {
  success: 'successes',
  failure: 'failures',
  reject: 'rejects',
  stateChange: 'stateChanges',
  open: 'opens',
  halfOpen: 'halfOpens',
  close: 'closes',
  storageError: 'storageErrors',
  notice: 'notices',
  error: 'errors',
};
/** The component's field names, as this package's options call them. */
const OPTION_OF_FIELD = {
  'fail-max': 'failMax',
  'reset-timeout-ms': 'resetTimeout',
  'success-threshold': 'successThreshold',
  'half-open-max-calls': 'halfOpenMaxCalls',
  'trial-timeout-ms': 'trialTimeout',
  'fallback-state': 'fallbackState',
  'failure-rate-threshold': 'failureRateThreshold',
  'minimum-calls': 'minimumCalls',
  'window-ms': 'window',
  'window-calls': 'windowCalls',
  'slow-call-ms': 'slowCall',
  'slow-call-rate-threshold': 'slowCallRateThreshold',
  'backoff-multiplier': 'backoffMultiplier',
  'max-reset-timeout-ms': 'maxResetTimeout',
  'flush-interval-ms': 'flushInterval',
};
const MAX_U32 = 2 ** 32 - 1;

/** Thrown (or rejected with) when the breaker does not let a call run. */
export class CircuitOpenError extends Error {
  /**
   * @param {string} breaker
   * @param {{rejection: {tag: string, val?: bigint | string}, state: string}} refusal
   */
  constructor(breaker, refusal) {
    const rejection = refusal.rejection;
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
    /** The state that rejected the call (the fallback state when the storage failed). */
    this.state = refusal.state;
    /** Milliseconds until a call can be admitted, when that is known. */
    this.retryAfterMs = retryAfterMs;
  }
}

/**
 * A CircuitOpenError for a refusal, built without capturing a stack: a
 * rejection happens where the breaker was called, which the caller knows,
 * and capturing one costs more than the breaker's own decision.
 */
function rejection(breaker, refusal) {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    return new CircuitOpenError(breaker, refusal);
  } finally {
    Error.stackTraceLimit = limit;
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

/** A percentage option: a whole number (the component says which are valid). */
function percent(options, key, name) {
  const value = options[key];
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value)) {
    throw new TypeError(`${name}: ${key} must be a whole number (a percentage), got ${describe(value)}`);
  }
  if (value < 0 || value > 255) {
    throw new RangeError(`${name}: ${key} must be a percentage from 1 to 100, got ${value}`);
  }
  return value;
}

/** A number of milliseconds that may be 0. */
function flushMillis(options, key, name) {
  if (options[key] === 0) return 0n;
  return millis(options, key, name);
}

/** A decimal option (the component says which are valid). */
function decimal(options, key, name) {
  const value = options[key];
  if (value === undefined) return undefined;
  if (typeof value !== 'number') {
    throw new TypeError(`${name}: ${key} must be a number, got ${describe(value)}`);
  }
  return value;
}

function describe(value) {
  return typeof value === 'string' ? JSON.stringify(value) : `${value} (${typeof value})`;
}

const KNOWN_OPTIONS = new Set([
  ...Object.values(OPTION_OF_FIELD), 'exclude', 'storage', 'clock', 'signal',
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
    throw new TypeError(`${name}: storage must have load(key) and compareAndSwap(key, expected, data) methods (answering at once or with promises)`);
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
      failureRateThreshold: percent(options, 'failureRateThreshold', name),
      minimumCalls: count(options, 'minimumCalls', name),
      windowMs: millis(options, 'window', name),
      windowCalls: count(options, 'windowCalls', name),
      slowCallMs: millis(options, 'slowCall', name),
      slowCallRateThreshold: percent(options, 'slowCallRateThreshold', name),
      backoffMultiplier: decimal(options, 'backoffMultiplier', name),
      maxResetTimeoutMs: millis(options, 'maxResetTimeout', name),
      flushIntervalMs: flushMillis(options, 'flushInterval', name),
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
  /** The generation of the last state change told. */
  #told = undefined;
  /** Whether the storage is failing, so that an outage is told once. */
  #outage = false;
  /**
   * The component's last answer to acquire while its `holds` stands.
   * @type {{holds: {version: bigint, untilMs?: bigint}, admission?: object, refusal?: object} | undefined}
   */
  #memo = undefined;
  /** Event types that have ever had a listener (never shrinks, so no event is lost). */
  #heard = new Set();
  /** What this breaker object has done, counted per event (`stats`). */
  #stats = Object.fromEntries(Object.values(STAT_OF_EVENT).map((stat) => [stat, 0]));
  /** The timer that merges held window outcomes when they fall due. */
  #flushTimer = undefined;

  /**
   * @param {string} name The breaker's name: its key in the storage.
   * @param {object} [options] See the README: failMax, resetTimeout (ms),
   *   successThreshold, halfOpenMaxCalls, trialTimeout (ms), fallbackState,
   *   failureRateThreshold (%), minimumCalls, window (ms), windowCalls,
   *   slowCall (ms), slowCallRateThreshold (%), backoffMultiplier,
   *   maxResetTimeout (ms), exclude, storage, clock, signal.
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

  /**
   * What this breaker object has done since it was made, as plain numbers
   * (opossum's `stats`): successes, failures, rejects, stateChanges, opens,
   * halfOpens, closes, storageErrors (outages begun), notices, errors.
   */
  get stats() {
    return { ...this.#stats };
  }

  /**
   * A promise of the effective state now (`await breaker.state`): an open
   * breaker whose timeout elapsed reads half-open.
   */
  get state() {
    return this.snapshot().then((snapshot) => snapshot.state);
  }

  /**
   * Resolves to the state, counters, opened-at, trials in flight,
   * generation, retry-after, the window's counts and rates, and the open's
   * duration, now.
   */
  async snapshot() {
    return after(this.#settled({ tag: 'snapshot' }), (s) => this.#snapshot(s));
  }

  /** A snapshot as this package gives it: plain numbers and names. */
  #snapshot(s) {
    const number = (value) => (value === undefined ? undefined : Number(value));
    return {
      state: s.state,
      failures: s.failures,
      successes: s.successes,
      openedAtMs: number(s.openedAtMs),
      trialsInFlight: s.trialsInFlight,
      generation: Number(s.generation),
      retryAfterMs: number(s.retryAfterMs),
      version: Number(s.version),
      window: {
        calls: s.windowCalls,
        failures: s.windowFailures,
        slowCalls: s.windowSlowCalls,
        failureRate: s.failureRate,
        slowCallRate: s.slowCallRate,
      },
      openDurationMs: number(s.openDurationMs),
      retryAtMs: number(s.retryAtMs),
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

  /** Operator: applies an action ('open', 'close', 'half-open', 'force-open' or 'disable') now. */
  async operate(action) {
    if (!Object.values(ACTION_OF_METHOD).includes(action)) {
      throw new RangeError(`${this.#name}: action must be one of ${Object.values(ACTION_OF_METHOD).join(', ')}, got ${describe(action)}`);
    }
    return after(this.#settled({ tag: 'operate', val: action }), () => undefined);
  }

  /**
   * Merges the window outcomes this breaker holds into the record now (a
   * timer does it when they fall due; call `dispose()` when done with the
   * breaker).
   */
  async flush() {
    clearTimeout(this.#flushTimer);
    this.#flushTimer = undefined;
    return after(this.#settled({ tag: 'flush' }), () => undefined);
  }

  /** Merges what the breaker holds and stops its timer: call it when done with the breaker. */
  async dispose() {
    return this.flush();
  }

  async [Symbol.asyncDispose]() {
    return this.dispose();
  }

  /** Asks for a flush when the component says held outcomes fall due. */
  #flushBy(dueMs) {
    if (dueMs === undefined || this.#flushTimer !== undefined) return;
    const wait = Math.max(0, Number(dueMs) - Math.floor(this.#clock()));
    this.#flushTimer = setTimeout(() => {
      this.#flushTimer = undefined;
      this.flush().catch((error) => this.#emit('error', { error }));
    }, wait);
    // An idle process is not kept alive for it (Node); browsers have no unref.
    this.#flushTimer.unref?.();
  }

  /** Operator: opens the circuit now. */
  async open() {
    return this.operate(ACTION_OF_METHOD.open);
  }

  /** Operator: closes the circuit and resets its counters. */
  async close() {
    return this.operate(ACTION_OF_METHOD.close);
  }

  /** Operator: moves the circuit to half-open. */
  async halfOpen() {
    return this.operate(ACTION_OF_METHOD.halfOpen);
  }

  /** Operator: rejects every call until another operator action. */
  async forceOpen() {
    return this.operate(ACTION_OF_METHOD.forceOpen);
  }

  /** Operator: admits every call and records nothing. */
  async disable() {
    return this.operate(ACTION_OF_METHOD.disable);
  }

  /**
   * Asks for a permit; resolves to `{ trial, degraded, report(outcome) }`
   * where outcome is 'success', 'failure' or 'ignored' and `report`
   * resolves to whether the report opened the circuit. Rejects with
   * CircuitOpenError when the call is not admitted.
   */
  async acquire() {
    return after(this.#acquire(), (admission) => {
      let reported = false;
      return {
        trial: admission.permit.trial,
        degraded: admission.degraded,
        report: async (outcome) => {
          if (reported) throw new Error(`${this.#name}: this permit was reported already`);
          if (!['success', 'failure', 'ignored'].includes(outcome)) {
            throw new RangeError(`${this.#name}: outcome must be success, failure or ignored, got ${describe(outcome)}`);
          }
          reported = true;
          return this.#report(admission, outcome);
        },
      };
    });
  }

  async #run(signal, fn, args) {
    if (typeof fn !== 'function') throw new TypeError(`${this.#name}: call takes a function`);
    signal?.throwIfAborted();
    let admission = this.#acquire();
    // The memo and a storage that answers at once cost no promise turn.
    if (isThenable(admission)) {
      admission = await admission;
      if (signal?.aborted) {
        // Aborted while the storage answered: the call does not run.
        await this.#reportQuietly(admission, 'ignored');
        signal.throwIfAborted();
      }
    }
    let reported = false;
    let reporting;
    const report = (outcome) => {
      if (!reported) {
        reported = true;
        reporting = this.#reportQuietly(admission, outcome);
      }
      return reporting;
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
    const recorded = report(this.#classify(result));
    // The call ends once its outcome is recorded (a report in flight when
    // the signal aborted is waited for too).
    if (isThenable(recorded)) await recorded;
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

  /**
   * Reports a finished call; a failure to record it goes to listeners, not
   * to the caller. A promise (that never rejects) when the storage answers
   * with one.
   */
  #reportQuietly(admission, outcome) {
    const quietly = (error) => {
      // A storage outage is told once, when it starts.
      if (error.kind !== 'storage') this.#emit('error', { error });
    };
    try {
      const reported = this.#report(admission, outcome);
      return isThenable(reported) ? reported.then(undefined, quietly) : reported;
    } catch (error) {
      return quietly(error);
    }
  }

  /**
   * An admission, or a CircuitOpenError thrown; a promise of either when the
   * storage answers with one. A kept answer is reused while it holds.
   */
  #acquire() {
    let version;
    try {
      version = typeof this.#storage.peekVersion === 'function' ? this.#storage.peekVersion(this.#name) : undefined;
      // Only a version known at once counts (a promise of one is no help).
      if (typeof version !== 'number') version = undefined;
    } catch {
      // The component asks the storage itself, and follows the fallback if it fails.
      version = undefined;
    }
    const reused = version === undefined ? undefined : this.#reuse(version);
    if (reused !== undefined) return this.#admitted(reused);
    const known = version === undefined ? { tag: 'nothing' } : { tag: 'version', val: BigInt(version || 0) };
    return after(this.#enter({ tag: 'acquire' }, known), (result) => {
      const answer = result.tag === 'ok' ? { admission: result.val } : { refusal: result.val };
      this.#keep(version, answer);
      const degraded = answer.admission?.degraded ?? (answer.refusal?.rejection.tag === 'storage-unavailable' ? answer.refusal.rejection.val : undefined);
      this.#noteOutage(degraded);
      return this.#admitted(answer);
    });
  }

  /** An answer's admission, or its refusal thrown as a CircuitOpenError. */
  #admitted(answer) {
    if (answer.admission) return answer.admission;
    const rejected = rejection(this.#name, answer.refusal);
    this.#emit('reject', { error: rejected });
    throw rejected;
  }

  /** Keeps an answer that holds, read at `version` (a Number), for `#reuse`. */
  #keep(version, answer) {
    const holds = (answer.admission ?? answer.refusal).holds;
    this.#memo = version === undefined || holds === undefined ? undefined : {
      version: Number(holds.version),
      untilMs: holds.untilMs === undefined ? undefined : Number(holds.untilMs),
      ...answer,
      /** The last reused answer and the ms it was given at. */
      reused: undefined,
      reusedAt: undefined,
    };
  }

  /**
   * The kept answer as the component would give it now, if the stored
   * version is still `version`: an admission issued now, a rejection whose
   * milliseconds count down to now. Within one millisecond it is one object.
   */
  #reuse(version) {
    const kept = this.#memo;
    if (kept === undefined || kept.version !== version) return undefined;
    const now = Math.floor(this.#clock());
    if (kept.untilMs !== undefined && now >= kept.untilMs) return undefined;
    if (kept.reusedAt === now) return kept.reused;
    let reused;
    if (kept.admission) {
      const { permit } = kept.admission;
      reused = { admission: { ...kept.admission, permit: { ...permit, issuedAtMs: BigInt(now) } } };
    } else {
      const { rejection } = kept.refusal;
      const left = kept.untilMs === undefined || typeof rejection.val !== 'bigint' ? rejection : { tag: rejection.tag, val: BigInt(kept.untilMs - now) };
      reused = { refusal: { ...kept.refusal, rejection: left } };
    }
    kept.reused = reused;
    kept.reusedAt = now;
    return reused;
  }

  /** Tells an outage once, when it starts (`message`: the storage's, or undefined when it answered). */
  #noteOutage(message) {
    if (message === undefined) this.#outage = false;
    else if (!this.#outage) {
      this.#outage = true;
      this.#emit('storageError', { message });
    }
  }

  #report(admission, outcome) {
    if (outcome === 'success' && admission.quietSuccess && this.#unchangedSince(admission.holds)) {
      this.#emit('success', {});
      return false;
    }
    const settled = this.#settled(
      { tag: 'report', val: { permit: admission.permit, outcome } },
      (answer) => {
        if (outcome === 'failure') this.#emit('failure', { tripped: answer?.tripped ?? false });
      },
    );
    return after(settled, (reported) => {
      if (outcome === 'success') this.#emit('success', {});
      this.#flushBy(reported.flushByMs);
      return reported.tripped;
    });
  }

  /**
   * `#enter` for an operation whose error is a breaker-error: thrown as an
   * Error whose `kind` is 'storage', 'corrupt' or 'contended'; a
   * storage error starts an outage, an answer ends one.
   */
  #settled(request, before) {
    return after(this.#enter(request, { tag: 'nothing' }, before), (result) => {
      if (result.tag === 'err') {
        const error = result.val;
        if (error.tag === 'storage') this.#noteOutage(error.val);
        throw Object.assign(new Error(String(error.val)), { kind: error.tag });
      }
      this.#noteOutage(undefined);
      return result.val;
    });
  }

  /** Whether the storage still holds the version a quiet success was decided on (or cannot tell). */
  #unchangedSince(holds) {
    if (holds === undefined || typeof this.#storage.peekVersion !== 'function') return true;
    return this.#storage.peekVersion(this.#name) === Number(holds.version);
  }

  /**
   * Runs one operation on the component over this breaker's storage and
   * clock, then tells the state changes it saw. `before` runs first with the
   * answer's ok value (pybreaker's order: failure, then state change).
   * Returns the answer's result ({tag: 'ok' | 'err', val}), or a promise of
   * it when the storage answers with promises.
   */
  #enter(request, known, before) {
    return after(run(this.#guest, this.#name, this.#storage, this.#clock, request, known), (done) => {
      const result = done.answer.val;
      before?.(result.tag === 'ok' ? result.val : undefined);
      this.#tell(done.changes);
      for (const { kind, message } of done.notices) this.#emit('notice', { kind, message });
      return result;
    });
  }

  /** Tells each generation's change once. */
  #tell(announced) {
    for (const change of announced) {
      if (this.#told !== undefined && change.generation <= this.#told) continue;
      this.#told = change.generation;
      const detail = {
        previous: change.previous,
        current: change.current,
        atMs: Number(change.atMs),
        generation: Number(change.generation),
        reason: change.reason,
        remote: change.remote,
      };
      this.#emit('stateChange', detail);
      const named = EVENT_OF_STATE[change.current];
      if (named) this.#emit(named, detail);
    }
  }

  #emit(type, detail) {
    this.#stats[STAT_OF_EVENT[type]] += 1;
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
