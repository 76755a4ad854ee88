// Runs every scenario in ../tests/scenarios/*.json through the JavaScript
// package. The Rust host runs the same files (tests/scenarios.rs).

import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

import { CircuitBreaker, CircuitOpenError, MemoryStorage } from '../src/index.js';

const dir = new URL('../../tests/scenarios/', import.meta.url);
const files = readdirSync(dir).filter((f) => f.endsWith('.json')).sort();
const START = 1_000_000;

/** Scenario config (WIT names, ms) to constructor options. */
function options(config, clock, storage) {
  const rename = {
    resetTimeoutMs: 'resetTimeout',
    trialTimeoutMs: 'trialTimeout',
    windowMs: 'window',
    slowCallMs: 'slowCall',
    maxResetTimeoutMs: 'maxResetTimeout',
    flushIntervalMs: 'flushInterval',
  };
  const out = { clock, storage };
  for (const [key, value] of Object.entries(config)) out[rename[key] ?? key] = value;
  return out;
}

/** The option a WIT field is called in JavaScript. */
const OPTION_OF_FIELD = {
  'fail-max': 'failMax',
  'success-threshold': 'successThreshold',
  'half-open-max-calls': 'halfOpenMaxCalls',
  'reset-timeout-ms': 'resetTimeout',
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
  name: 'name',
};

test('there are scenario files', () => assert.ok(files.length >= 10, files.join(', ')));

/**
 * The scenarios' storage: memory that a `storage` step can make fail. It
 * tells its version for free while it works, as memory does. Awaited, it
 * answers with promises that settle on a later turn of the event loop.
 * (This host runs one component instance, so a step's `instance` changes
 * nothing.)
 */
class Switch {
  failing = false;
  #inner = new MemoryStorage();
  #awaited;
  constructor(awaited) {
    this.#awaited = awaited;
  }
  #answer(step) {
    if (!this.#awaited) {
      if (this.failing) throw new Error('connection refused (scenario)');
      return step();
    }
    return new Promise((resolve, reject) => setImmediate(() => {
      if (this.failing) reject(new Error('connection refused (scenario)'));
      else resolve(step());
    }));
  }
  load(key) {
    return this.#answer(() => this.#inner.load(key));
  }
  compareAndSwap(key, expected, data) {
    return this.#answer(() => this.#inner.compareAndSwap(key, expected, data));
  }
  peekVersion(key) {
    if (this.failing) throw new Error('connection refused (scenario)');
    return this.#inner.peekVersion(key);
  }
}

for (const [file, awaited] of files.flatMap((file) => [[file, false], [file, true]])) {
  const scenario = JSON.parse(readFileSync(new URL(file, dir), 'utf8'));
  const over = awaited ? ' (over a storage that answers with promises)' : '';
  test(`scenario ${file}: ${scenario.description}${over}`, async () => {
    if (scenario.invalid) {
      for (const bad of scenario.invalid) {
        const option = OPTION_OF_FIELD[bad.field];
        assert.throws(
          () => new CircuitBreaker(bad.name ?? 'invalid', options(bad.config, () => START)),
          (error) =>
            (error instanceof RangeError || error instanceof TypeError) &&
            error.message.includes(option) &&
            // The refusal says why: there is more after the option's name.
            error.message.slice(error.message.indexOf(option) + option.length).trim() !== '',
          `${file}: ${JSON.stringify(bad)}`,
        );
      }
      return;
    }
    let now = START;
    const clock = () => now;
    const storage = new Switch(awaited);
    const heard = [];
    const outages = [];
    const notices = [];
    const count = scenario.configs?.length ?? scenario.breakers ?? 1;
    const breakers = Array.from({ length: count }, (_, i) => {
      const config = scenario.configs?.[i] ?? scenario.config;
      const breaker = new CircuitBreaker('scenario', options(config, clock, storage));
      heard[i] = [];
      outages[i] = 0;
      notices[i] = [];
      breaker.addEventListener('notice', (e) => notices[i].push(e.detail.kind));
      breaker.addEventListener('stateChange', (e) => {
        const d = e.detail;
        heard[i].push([d.previous, d.current, d.remote, d.reason, d.atMs - START]);
      });
      breaker.addEventListener('storageError', () => {
        outages[i] += 1;
      });
      return breaker;
    });
    const told = breakers.map(() => 0);
    const permits = new Map();
    for (const [n, step] of scenario.steps.entries()) {
      const at = `${file} step ${n}: ${JSON.stringify(step)}`;
      const on = step.on ?? 0;
      const breaker = breakers[on];
      switch (step.do) {
        case 'advance':
          now += step.ms;
          break;
        case 'storage':
          storage.failing = step.failing;
          break;
        case 'outages':
          assert.equal(outages[on], step.expect, at);
          outages[on] = 0;
          break;
        case 'notices':
          assert.deepEqual(notices[on], step.expect, at);
          notices[on] = [];
          break;
        case 'acquire':
          if (step.rejected) {
            await assert.rejects(breaker.acquire(), (error) => {
              assert.ok(error instanceof CircuitOpenError, at);
              assert.equal(error.reason, step.rejected, at);
              if (step.state !== undefined) assert.equal(error.state, step.state, at);
              if (step.retryAfterMs !== undefined) assert.equal(error.retryAfterMs, step.retryAfterMs, at);
              return true;
            });
          } else {
            const permit = await breaker.acquire();
            assert.equal(permit.trial, step.trial ?? false, at);
            assert.equal(permit.degraded !== undefined, step.degraded ?? false, at);
            permits.set(step.permit, permit);
          }
          break;
        case 'report': {
          const permit = permits.get(step.permit);
          permits.delete(step.permit);
          if (step.error) {
            await assert.rejects(permit.report(step.outcome), (error) => error.kind === step.error, at);
            break;
          }
          const tripped = await permit.report(step.outcome);
          if (step.tripped !== undefined) assert.equal(tripped, step.tripped, at);
          break;
        }
        case 'operate':
          await breaker.operate(step.action);
          break;
        case 'snapshot': {
          const s = await breaker.snapshot();
          const got = {
            ...s,
            openedAt: s.openedAtMs === undefined ? null : s.openedAtMs - START,
            retryAfterMs: s.retryAfterMs ?? null,
            windowCalls: s.window.calls,
            windowFailures: s.window.failures,
            windowSlowCalls: s.window.slowCalls,
            failureRate: s.window.failureRate ?? null,
            slowCallRate: s.window.slowCallRate ?? null,
            openDurationMs: s.openDurationMs ?? null,
            retryAt: s.retryAtMs === undefined ? null : s.retryAtMs - START,
          };
          for (const [key, expected] of Object.entries(step.expect)) assert.deepEqual(got[key], expected, `${at}: ${key}`);
          break;
        }
        case 'events': {
          // Each expected change lists what it checks, in this order:
          // previous, current, remote, reason, the change's time.
          const fresh = heard[on].slice(told[on]).map((change, n) => change.slice(0, (step.expect[n] ?? []).length || 3));
          assert.deepEqual(fresh, step.expect, at);
          told[on] = heard[on].length;
          break;
        }
        default:
          assert.fail(`${at}: unknown step`);
      }
    }
  });
}
