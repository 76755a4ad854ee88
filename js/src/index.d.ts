// Type declarations for the tripswitch package.

/** Where a circuit stands. */
export type State = 'closed' | 'open' | 'half-open' | 'forced-open' | 'disabled';

/** Every state, in declaration order. */
export declare const STATES: readonly State[];

/** What became of a permitted call. */
export type Outcome = 'success' | 'failure' | 'ignored';

/** An operator's command. */
export type Action = 'open' | 'close' | 'half-open' | 'force-open' | 'disable';

/** Why the state last changed. */
export type Reason =
  | 'tripped'
  | 'trial-failed'
  | 'recovered'
  | 'timeout-elapsed'
  | 'operator'
  | 'failure-rate'
  | 'slow-call-rate';

/** A stored record and its version. */
export interface Entry {
  version: number;
  data: Uint8Array;
}

/** What a compare-and-swap did. */
export type SwapResult = { written: number } | { conflict: Entry | undefined };

/**
 * A versioned register per key. `load` and `compareAndSwap` answer at once
 * or with a promise (a Redis client); versions grow with every write.
 */
export interface Storage {
  /** The key's entry, or undefined when it is absent. */
  load(key: string): Entry | undefined | Promise<Entry | undefined>;
  /** Writes if the key's version is `expected` (undefined: absent). */
  compareAndSwap(
    key: string,
    expected: number | undefined,
    data: Uint8Array,
  ): SwapResult | Promise<SwapResult>;
  /** The key's version (0: absent), if the storage knows it at once, without I/O. */
  peekVersion?(key: string): number | undefined;
}

/** Breaker state in memory; breakers given the same instance share state. */
export declare class MemoryStorage implements Storage {
  load(key: string): Entry | undefined;
  compareAndSwap(
    key: string,
    expected: number | undefined,
    data: Uint8Array,
  ): SwapResult;
  peekVersion(key: string): number;
  /** The keys stored, sorted. */
  keys(): string[];
  /** Removes a key; true if it was there. */
  delete(key: string): boolean;
}

/** A breaker's knobs; each left out takes the component's default. */
export interface CircuitBreakerOptions {
  /** Consecutive failures that open the circuit. */
  failMax?: number;
  /** How long the circuit stays open before a trial, in ms. */
  resetTimeout?: number;
  /** Trial successes that close the circuit. */
  successThreshold?: number;
  /** Trials in flight at once in half-open. */
  halfOpenMaxCalls?: number;
  /** How long a trial may run before its slot is forfeited, in ms. */
  trialTimeout?: number;
  /** What calls meet while the storage fails. */
  fallbackState?: State;
  /** The window's failure rate (percent, 1-100) that opens the circuit; with it, failMax applies only if set. */
  failureRateThreshold?: number;
  /** Calls the window must hold before its rates count. */
  minimumCalls?: number;
  /** A time window of this many ms (ten buckets of a tenth each). */
  window?: number;
  /** A count window of the last this many calls (not with `window`). */
  windowCalls?: number;
  /** A call that takes longer than this many ms is slow; a slow trial fails. */
  slowCall?: number;
  /** The window's slow-call rate (percent, 1-100) that opens the circuit. */
  slowCallRateThreshold?: number;
  /** Each open after a failed trial waits this many times the one before. */
  backoffMultiplier?: number;
  /** The longest an open waits, in ms. */
  maxResetTimeout?: number;
  /** How long the breaker may hold window outcomes before merging them, in ms (0: every report writes). */
  flushInterval?: number;
  /** Errors that count as successes: Error classes, or predicates. */
  exclude?: ((error: unknown) => boolean) | (new (...args: any[]) => Error) | Array<((error: unknown) => boolean) | (new (...args: any[]) => Error)>;
  /** Where the state lives (default: a MemoryStorage of its own). */
  storage?: Storage;
  /** Unix time in ms (default: Date.now). */
  clock?: () => number;
  /** Once aborted, results of calls in flight are not counted. */
  signal?: AbortSignal;
}

/** The breaker's state at one instant. */
export interface Snapshot {
  state: State;
  failures: number;
  successes: number;
  openedAtMs: number | undefined;
  trialsInFlight: number;
  generation: number;
  retryAfterMs: number | undefined;
  /** The stored version it was read at (0: the key is absent). */
  version: number;
  /** What the failure-rate window holds now. */
  window: {
    calls: number;
    failures: number;
    slowCalls: number;
    /** Percent; undefined while the window holds no calls. */
    failureRate: number | undefined;
    slowCallRate: number | undefined;
  };
  /** How long the current (or last) open lasts, the backoff applied. */
  openDurationMs: number | undefined;
  /** When a trial becomes allowed, as the record says (undefined: not open, or an older record). */
  retryAtMs: number | undefined;
}

/** The detail of a `stateChange`, `open`, `halfOpen` or `close` event. */
export interface StateChangeDetail {
  breaker: string;
  previous: State;
  current: State;
  /** When the writer made the change. */
  atMs: number;
  generation: number;
  reason: Reason;
  remote: boolean;
}

/** The detail of a `notice` event: something the breaker did besides changing state (told by the one process that did it). */
export interface NoticeDetail {
  breaker: string;
  /** 'window-restarted': another config's window shape replaced the stored one, left for a minute. */
  kind: 'window-restarted';
  message: string;
}

/** Why a call was not admitted. */
export declare class CircuitOpenError extends Error {
  readonly breaker: string;
  readonly reason: 'open' | 'half-open-full' | 'forced-open' | 'storage-unavailable';
  readonly state: State;
  readonly retryAfterMs: number | undefined;
}

/** A permit from `acquire`: report it once. */
export interface Permit {
  readonly trial: boolean;
  /** The storage's message when the storage failed and the fallback admitted the call. */
  readonly degraded: string | undefined;
  /** Records the outcome; resolves to whether it opened the circuit. */
  report(outcome: Outcome): Promise<boolean>;
}

/** What a breaker object has done since it was made, each a count. */
export interface Stats {
  successes: number;
  failures: number;
  rejects: number;
  stateChanges: number;
  opens: number;
  halfOpens: number;
  closes: number;
  storageErrors: number;
  notices: number;
  errors: number;
}

/** A circuit breaker, run by the tripswitch component. */
export declare class CircuitBreaker extends EventTarget {
  constructor(name: string, options?: CircuitBreakerOptions);
  readonly name: string;
  /** A promise of the effective state now. */
  readonly state: Promise<State>;
  readonly stats: Stats;
  snapshot(): Promise<Snapshot>;
  call<A extends unknown[], R>(fn: (...args: A) => R | Promise<R>, ...args: A): Promise<R>;
  callWithSignal<A extends unknown[], R>(signal: AbortSignal, fn: (...args: A) => R | Promise<R>, ...args: A): Promise<R>;
  wrap<A extends unknown[], R>(fn: (...args: A) => R | Promise<R>): (...args: A) => Promise<R>;
  /** A permit; rejects with CircuitOpenError when the call is not admitted. */
  acquire(): Promise<Permit>;
  operate(action: Action): Promise<void>;
  /** Merges the window outcomes this breaker holds into the record now. */
  flush(): Promise<void>;
  /** Merges what the breaker holds and stops its flush timer. */
  dispose(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
  open(): Promise<void>;
  close(): Promise<void>;
  halfOpen(): Promise<void>;
  forceOpen(): Promise<void>;
  disable(): Promise<void>;
}
