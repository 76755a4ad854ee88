// Storages that answer with promises (every network client): two breakers
// share one through concurrent calls, and the counts are exact, one trial
// runs, failures follow the fallback state; memory still answers at once.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { CircuitBreaker, CircuitOpenError, MemoryStorage } from '../src/index.js';

/** Memory behind promises that settle after a few ms, in any order. */
class Delayed {
  inner = new MemoryStorage();
  inFlight = 0;
  mostInFlight = 0;
  /** A message to reject every step with, or undefined. */
  failing = undefined;
  /** What the next steps resolve to instead of the real answer. */
  garbage = undefined;

  #later(step) {
    this.inFlight += 1;
    this.mostInFlight = Math.max(this.mostInFlight, this.inFlight);
    return new Promise((resolve, reject) => setTimeout(() => {
      this.inFlight -= 1;
      if (this.failing !== undefined) reject(new Error(this.failing));
      else resolve(this.garbage ?? step());
    }, Math.floor(Math.random() * 4)));
  }

  load(key) {
    return this.#later(() => this.inner.load(key));
  }

  compareAndSwap(key, expected, data) {
    return this.#later(() => this.inner.compareAndSwap(key, expected, data));
  }
}

const boom = () => {
  throw new Error('boom');
};

function pair(storage, options) {
  return [new CircuitBreaker('shared', { storage, ...options }), new CircuitBreaker('shared', { storage, ...options })];
}

test('two breakers over a promise storage count concurrent calls exactly', async () => {
  const storage = new Delayed();
  const [a, b] = pair(storage, { failureRateThreshold: 100 });
  const calls = Array.from({ length: 200 }, (_, i) => {
    const breaker = i % 2 === 0 ? a : b;
    return breaker.call(i % 4 === 0 ? boom : () => 'ok').then(() => 'ok', (error) => error.message);
  });
  const results = await Promise.all(calls);
  assert.equal(results.filter((r) => r === 'boom').length, 50, 'every fourth call failed, none was refused');
  assert.ok(storage.mostInFlight >= 20, `steps interleave (at most ${storage.mostInFlight} were in flight)`);
  await a.flush();
  await b.flush();
  const window = (await a.snapshot()).window;
  assert.deepEqual([window.calls, window.failures], [200, 50]);
  assert.deepEqual((await b.snapshot()).window, window);

  const [c, d] = pair(new Delayed(), { failMax: 1000 });
  await Promise.all(Array.from({ length: 32 }, (_, i) => (i % 2 ? c : d).call(boom).catch(() => undefined)));
  assert.equal((await c.snapshot()).failures, 32, 'each consecutive failure counted once');
});

test('one trial between two breakers over a promise storage', async () => {
  let now = 1_000_000;
  const storage = new Delayed();
  const [a, b] = pair(storage, { failMax: 1, resetTimeout: 100, clock: () => now });
  await assert.rejects(a.call(boom), /boom/);
  assert.equal(await b.state, 'open');
  now += 100;
  let release;
  const gate = new Promise((resolve) => (release = resolve));
  let ran = 0;
  const trials = Array.from({ length: 10 }, (_, i) => (i % 2 ? a : b).call(async () => {
    ran += 1;
    await gate;
    return 'recovered';
  }).catch((error) => error));
  // Every call has asked; one holds the slot.
  while (ran === 0 || storage.inFlight > 0) await new Promise((resolve) => setTimeout(resolve, 5));
  release();
  const results = await Promise.all(trials);
  assert.equal(ran, 1, 'one trial ran');
  assert.equal(results.filter((r) => r === 'recovered').length, 1);
  const refused = results.filter((r) => r instanceof CircuitOpenError);
  assert.equal(refused.length, 9);
  assert.ok(refused.every((error) => error.reason === 'half-open-full'), refused.map((e) => e.reason).join());
  assert.equal(await a.state, 'closed');
});

test('a promise storage that rejects follows the fallback state, told once', async () => {
  const storage = new Delayed();
  const admits = new CircuitBreaker('down', { storage });
  const refuses = new CircuitBreaker('down', { storage, fallbackState: 'open' });
  let outages = 0;
  admits.addEventListener('storageError', () => (outages += 1));
  storage.failing = 'connection reset';
  assert.equal(await admits.call(() => 'admitted'), 'admitted');
  assert.equal(await admits.call(() => 'admitted'), 'admitted');
  assert.equal(outages, 1);
  const permit = await admits.acquire();
  assert.match(permit.degraded, /connection reset/);
  await permit.report('success');
  await assert.rejects(refuses.call(() => 1), (e) => e.reason === 'storage-unavailable' && /connection reset/.test(e.message));
  await assert.rejects(admits.snapshot(), (e) => e.kind === 'storage' && /connection reset/.test(e.message));
  // An answer of the wrong shape is named, not trusted.
  storage.failing = undefined;
  storage.garbage = { written: 'soon' };
  await assert.rejects(admits.operate('open'), /storage load failed: a storage entry's data must be a Uint8Array/);
  storage.garbage = undefined;
  await admits.operate('open');
  assert.equal(await refuses.state, 'open');
});

test('memory answers at once: a healthy call starts before call() returns', async () => {
  const breaker = new CircuitBreaker('memory');
  let ran = false;
  const call = breaker.call(() => {
    ran = true;
  });
  assert.equal(ran, true, 'no promise turn before the function runs');
  await call;
  const delayed = new CircuitBreaker('delayed', { storage: new Delayed() });
  ran = false;
  const later = delayed.call(() => {
    ran = true;
  });
  assert.equal(ran, false, 'a promise storage is awaited first');
  await later;
  assert.equal(ran, true);
});

test('a call aborted while its storage answers does not run and frees its slot', async () => {
  let now = 1_000_000;
  const breaker = new CircuitBreaker('abort-async', { storage: new Delayed(), failMax: 1, resetTimeout: 100, clock: () => now });
  await assert.rejects(breaker.call(boom), /boom/);
  now += 100;
  const controller = new AbortController();
  let ran = false;
  const call = breaker.callWithSignal(controller.signal, () => {
    ran = true;
  });
  controller.abort();
  await assert.rejects(call, { name: 'AbortError' });
  assert.equal(ran, false);
  const s = await breaker.snapshot();
  assert.deepEqual([s.state, s.trialsInFlight], ['half-open', 0]);
});
