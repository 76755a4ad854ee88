// The JavaScript API: calls, errors, exclude, abort, events, shared storage,
// custom storages, and bad options named before they reach the component.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { CircuitBreaker, CircuitOpenError, MemoryStorage, STATES } from '../src/index.js';

function clocked(options = {}) {
  const clock = { now: 1_000_000 };
  return { clock, options: { clock: () => clock.now, ...options } };
}

const boom = () => {
  throw new Error('boom');
};

test('sync and async functions: values, arguments, errors', async () => {
  const breaker = new CircuitBreaker('values', { failMax: 3 });
  assert.equal(await breaker.call((a, b) => a + b, 2, 3), 5);
  assert.equal(await breaker.call(async (x) => x * 2, 21), 42);
  await assert.rejects(breaker.call(boom), /boom/);
  await assert.rejects(breaker.call(async () => Promise.reject(new TypeError('async boom'))), TypeError);
  assert.equal((await breaker.snapshot()).failures, 2);
  await breaker.call(() => 'ok');
  assert.equal((await breaker.snapshot()).failures, 0);
  const double = breaker.wrap((x) => x * 2);
  assert.equal(await double(4), 8);
});

test('rejections are CircuitOpenErrors with retryAfterMs and the state', async () => {
  const { clock, options } = clocked({ failMax: 1, resetTimeout: 1000 });
  const breaker = new CircuitBreaker('rejects', options);
  await assert.rejects(breaker.call(boom), /boom/);
  clock.now += 250;
  let ran = false;
  const error = await breaker.call(() => (ran = true)).catch((e) => e);
  assert.equal(ran, false, 'a rejected call does not run');
  assert.ok(error instanceof CircuitOpenError);
  assert.equal(error.retryAfterMs, 750);
  assert.equal(error.state, 'open');
  assert.equal(error.reason, 'open');
  assert.match(error.message, /breaker "rejects": circuit open; retry after 750 ms/);
  await breaker.forceOpen();
  const forced = await breaker.call(() => 1).catch((e) => e);
  assert.equal(forced.state, 'forced-open');
  assert.equal(forced.retryAfterMs, undefined);
});

test('exclude: error classes and predicates count as successes, and still reject the call', async () => {
  class NotFound extends Error {}
  const breaker = new CircuitBreaker('exclude', {
    failMax: 2,
    exclude: [NotFound, (e) => e.code === 'EAGAIN'],
  });
  await assert.rejects(breaker.call(boom));
  assert.equal((await breaker.snapshot()).failures, 1);
  await assert.rejects(breaker.call(() => Promise.reject(new NotFound('gone'))), NotFound);
  assert.equal((await breaker.snapshot()).failures, 0);
  await assert.rejects(breaker.call(boom));
  await assert.rejects(breaker.call(() => Promise.reject(Object.assign(new Error('again'), { code: 'EAGAIN' }))));
  assert.equal((await breaker.snapshot()).failures, 0);
  assert.equal(await breaker.state, 'closed');
});

test('an aborted call records ignored and frees its trial slot', async () => {
  const { clock, options } = clocked({ failMax: 1, resetTimeout: 100 });
  const breaker = new CircuitBreaker('abort', options);
  await assert.rejects(breaker.call(boom));
  clock.now += 100;
  const controller = new AbortController();
  let release;
  const pending = breaker.callWithSignal(controller.signal, () => new Promise((r) => (release = r)));
  assert.equal((await breaker.snapshot()).trialsInFlight, 1);
  controller.abort();
  release('late');
  assert.equal(await pending, 'late');
  const s = await breaker.snapshot();
  assert.deepEqual([s.state, s.trialsInFlight], ['half-open', 0]);
  // A breaker-wide signal: once aborted, results are not counted.
  const all = new AbortController();
  const quiet = new CircuitBreaker('abort-all', { failMax: 1, signal: all.signal });
  all.abort();
  await assert.rejects(quiet.call(boom));
  assert.equal(await quiet.state, 'closed');
});

test('events come in pybreaker order, with their details', async () => {
  const { clock, options } = clocked({ failMax: 1, resetTimeout: 10 });
  const breaker = new CircuitBreaker('events', options);
  const heard = [];
  for (const type of ['stateChange', 'open', 'halfOpen', 'close', 'success', 'failure', 'reject']) {
    breaker.addEventListener(type, (e) => heard.push([type, e.detail.current ?? e.detail.tripped ?? e.detail.error?.reason ?? '']));
  }
  await assert.rejects(breaker.call(boom));
  assert.deepEqual(heard.splice(0), [['failure', true], ['stateChange', 'open'], ['open', 'open']]);
  await assert.rejects(breaker.call(() => 1), CircuitOpenError);
  assert.deepEqual(heard.splice(0), [['reject', 'open']]);
  clock.now += 10;
  await breaker.call(() => 1);
  assert.deepEqual(heard.splice(0), [
    ['stateChange', 'half-open'], ['halfOpen', 'half-open'],
    ['stateChange', 'closed'], ['close', 'closed'],
    ['success', ''],
  ]);
});

test('breakers given the same MemoryStorage share state; others do not', async () => {
  const storage = new MemoryStorage();
  const a = new CircuitBreaker('shared', { failMax: 2, storage });
  const b = new CircuitBreaker('shared', { failMax: 2, storage });
  const alone = new CircuitBreaker('shared', { failMax: 2 });
  await assert.rejects(a.call(boom));
  await assert.rejects(b.call(boom));
  assert.equal(await a.state, 'open');
  assert.equal(await alone.state, 'closed');
  assert.deepEqual(storage.keys(), ['shared']);
  let remote;
  a.addEventListener('stateChange', (e) => (remote = e.detail));
  await b.close();
  await a.snapshot();
  assert.deepEqual([remote.previous, remote.current, remote.remote], ['open', 'closed', true]);
});

test('a storage of your own: the documented interface, and its failures', async () => {
  const inner = new MemoryStorage();
  let down = false;
  const calls = [];
  const storage = {
    load(key) {
      calls.push('load');
      if (down) throw new Error('connection refused');
      return inner.load(key);
    },
    compareAndSwap(key, expected, data) {
      calls.push('cas');
      if (down) throw new Error('connection refused');
      return inner.compareAndSwap(key, expected, data);
    },
  };
  const admits = new CircuitBreaker('own', { failMax: 2, storage });
  const rejects = new CircuitBreaker('own-2', { storage, fallbackState: 'open' });
  await assert.rejects(admits.call(boom));
  assert.deepEqual(calls.splice(0), ['load', 'cas']);
  let errors = 0;
  admits.addEventListener('storageError', () => errors++);
  down = true;
  assert.equal(await admits.call(() => 'fallback closed admits'), 'fallback closed admits');
  assert.equal(await admits.call(() => 'again'), 'again');
  assert.equal(errors, 1, 'an outage is told once');
  const error = await rejects.call(() => 1).catch((e) => e);
  assert.equal(error.reason, 'storage-unavailable');
  assert.match(error.message, /connection refused/);
  await assert.rejects(admits.snapshot(), /storage load failed: connection refused/);
  down = false;
  assert.equal((await admits.snapshot()).failures, 1);
});

test('corrupt stored bytes are a clear error, repaired by an operator', async () => {
  const storage = new MemoryStorage();
  storage.compareAndSwap('corrupt', undefined, new Uint8Array([1, 9]));
  const breaker = new CircuitBreaker('corrupt', { storage });
  await assert.rejects(breaker.snapshot(), /stored record is corrupt: unknown state code 9/);
  await breaker.close();
  assert.equal(await breaker.state, 'closed');
});

test('bad options are named before they reach the component', async () => {
  const cases = [
    [{ failMax: 0 }, RangeError, /failMax must be from 1/],
    [{ failMax: 1.5 }, TypeError, /failMax must be a whole number/],
    [{ failMax: '3' }, TypeError, /failMax must be a whole number, got "3"/],
    [{ successThreshold: -1 }, RangeError, /successThreshold/],
    [{ halfOpenMaxCalls: 2 ** 32 }, RangeError, /halfOpenMaxCalls/],
    [{ resetTimeout: 0 }, RangeError, /resetTimeout must be a whole number of milliseconds/],
    [{ resetTimeout: NaN }, TypeError, /resetTimeout/],
    [{ trialTimeout: 0.5 }, RangeError, /trialTimeout/],
    [{ fallbackState: 'ajar' }, RangeError, /fallbackState must be one of closed, open/],
    [{ fallbackState: 'half-open' }, RangeError, /invalid fallbackState/],
    [{ exclude: [42] }, TypeError, /exclude takes error classes or predicates/],
    [{ exclude: class HttpError {} }, TypeError, /class HttpError does not extend Error/],
    [{ storage: {} }, TypeError, /storage must have load/],
    [{ clock: 5 }, TypeError, /clock must be a function/],
    [{ signal: 'no' }, TypeError, /signal must be an AbortSignal/],
    [{ resettimeout: 5 }, TypeError, /unknown option "resettimeout"/],
  ];
  for (const [options, type, message] of cases) {
    assert.throws(() => new CircuitBreaker('bad', options), (e) => e instanceof type && message.test(e.message), JSON.stringify(options));
  }
  assert.throws(() => new CircuitBreaker(42), TypeError);
  assert.throws(() => new CircuitBreaker('', {}), /invalid name: must not be empty/);
  assert.throws(() => new CircuitBreaker('n'.repeat(257)), /at most 256 bytes/);
  const breaker = new CircuitBreaker('ok');
  await assert.rejects(breaker.call('not a function'), TypeError);
  await assert.rejects((await breaker.acquire()).report('maybe'), RangeError);
  assert.deepEqual(STATES, ['closed', 'open', 'half-open', 'forced-open', 'disabled']);
});

test('the defaults are the component\'s: five failures, sixty seconds', async () => {
  const { options } = clocked();
  const breaker = new CircuitBreaker('defaults', options);
  for (let i = 0; i < 4; i++) await assert.rejects(breaker.call(boom));
  assert.equal(await breaker.state, 'closed');
  await assert.rejects(breaker.call(boom));
  assert.equal((await breaker.snapshot()).retryAfterMs, 60_000);
});

test('an abort frees the slot at once, and an aborted signal runs nothing', async () => {
  const { clock, options } = clocked({ failMax: 1, resetTimeout: 100 });
  const breaker = new CircuitBreaker('abort-now', options);
  await assert.rejects(breaker.call(boom));
  clock.now += 100;
  const controller = new AbortController();
  let release;
  const hanging = breaker.callWithSignal(controller.signal, () => new Promise((r) => (release = r)));
  assert.equal((await breaker.snapshot()).trialsInFlight, 1);
  controller.abort();
  assert.equal((await breaker.snapshot()).trialsInFlight, 0, 'freed before the call settles');
  release('late');
  assert.equal(await hanging, 'late');
  let ran = false;
  await assert.rejects(breaker.callWithSignal(controller.signal, () => (ran = true)), { name: 'AbortError' });
  assert.equal(ran, false);
  assert.equal(await breaker.state, 'half-open');
});

test('a throwing exclusion counts the call as a failure and keeps the caller\'s error', async () => {
  const breaker = new CircuitBreaker('bad-exclude', {
    failMax: 1,
    exclude: () => {
      throw new Error('predicate bug');
    },
  });
  let told;
  breaker.addEventListener('error', (e) => (told = e.detail.error.message));
  await assert.rejects(breaker.call(boom), /boom/);
  assert.equal(told, 'predicate bug');
  assert.equal(await breaker.state, 'open');
});

test('a deleted key never hands out an old version, so no stale answer is reused', async () => {
  const storage = new MemoryStorage();
  const a = new CircuitBreaker('k', { storage });
  const b = new CircuitBreaker('k', { storage, failMax: 1 });
  await a.forceOpen();
  await assert.rejects(a.acquire(), CircuitOpenError);
  storage.delete('k');
  // One write after the delete: with versions starting over, it would carry
  // the version a's forced-open answer was given at.
  assert.equal(await (await b.acquire()).report('failure'), true);
  await assert.rejects(a.acquire(), (e) => e.reason === 'open', 'a asks again and hears open');
});

test('window outcomes are held and merged by flush(), dispose() and the timer', async () => {
  const storage = new MemoryStorage();
  const { clock, options } = clocked({ storage, failureRateThreshold: 50, flushInterval: 20 });
  const holder = new CircuitBreaker('held', options);
  const reader = new CircuitBreaker('held', { ...options, flushInterval: 0 });
  for (let i = 0; i < 3; i += 1) await holder.call(() => 'ok');
  await assert.rejects(holder.call(boom), /boom/);
  assert.equal((await holder.snapshot()).window.calls, 4, 'the holder counts what it holds');
  assert.equal((await reader.snapshot()).window.calls, 0, 'not in the record yet');
  await holder.flush();
  assert.deepEqual((await reader.snapshot()).window, {
    calls: 4, failures: 1, slowCalls: 0, failureRate: 25, slowCallRate: 0,
  });
  await holder.call(() => 'ok');
  await holder.dispose();
  assert.equal((await reader.snapshot()).window.calls, 5);
  // The timer merges what falls due (20 ms on this clock, which it reads).
  await holder.call(() => 'ok');
  clock.now += 20;
  await new Promise((resolve) => setTimeout(resolve, 60));
  assert.equal((await reader.snapshot()).window.calls, 6);
  assert.throws(() => new CircuitBreaker('x', { flushInterval: -1 }), /flushInterval/);
});

test('stats counts what the breaker did, as plain numbers', async () => {
  const { clock, options } = clocked({ failMax: 2, resetTimeout: 1000 });
  const breaker = new CircuitBreaker('stats', options);
  assert.deepEqual(breaker.stats, {
    successes: 0, failures: 0, rejects: 0, stateChanges: 0, opens: 0, halfOpens: 0, closes: 0, storageErrors: 0, notices: 0, errors: 0,
  });
  await breaker.call(() => 1);
  await assert.rejects(breaker.call(boom));
  await assert.rejects(breaker.call(boom));
  await assert.rejects(breaker.call(() => 1), CircuitOpenError);
  clock.now += 1000;
  await breaker.call(() => 1);
  const stats = breaker.stats;
  assert.deepEqual(stats, {
    successes: 2, failures: 2, rejects: 1, stateChanges: 3, opens: 1, halfOpens: 1, closes: 1, storageErrors: 0, notices: 0, errors: 0,
  });
  stats.successes = 99;
  assert.equal(breaker.stats.successes, 2, 'a copy, not the counters themselves');
});

test('a call whose abort could not be recorded is not reported a second time', async () => {
  const inner = new MemoryStorage();
  let down = false;
  const storage = {
    load: (key) => inner.load(key),
    compareAndSwap: (key, expected, data) => {
      if (down) throw new Error('connection refused');
      return inner.compareAndSwap(key, expected, data);
    },
    peekVersion: (key) => inner.peekVersion(key),
  };
  const { clock, options } = clocked({ failMax: 1, resetTimeout: 100, storage });
  const breaker = new CircuitBreaker('abort-once', options);
  await assert.rejects(breaker.call(boom));
  clock.now += 100;
  const controller = new AbortController();
  let fail;
  const trial = breaker.callWithSignal(controller.signal, () => new Promise((_, reject) => (fail = reject)));
  down = true;
  controller.abort();
  down = false;
  fail(new Error('late'));
  await assert.rejects(trial, /late/);
  const s = await breaker.snapshot();
  assert.deepEqual([s.state, s.trialsInFlight], ['half-open', 1], 'the late failure counts nothing');
});
