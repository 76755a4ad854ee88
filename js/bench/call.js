// Cost per call of tripswitch's breaker.call and opossum 10's fire(), in one
// run, on the same async no-op function: the success path and the rejection
// path of an open breaker. `npm run bench`.

import CircuitBreakerOpossum from 'opossum';

import { CircuitBreaker } from '../src/index.js';

const N = 100_000;
const noop = async () => 1;

async function perCall(run) {
  for (let i = 0; i < 5_000; i++) await run(); // warm-up
  const start = process.hrtime.bigint();
  for (let i = 0; i < N; i++) await run();
  return Number(process.hrtime.bigint() - start) / N;
}

const swallow = (promise) => promise.catch(() => {});

const tripswitch = new CircuitBreaker('bench');
const tripswitchOpen = new CircuitBreaker('bench-open');
await tripswitchOpen.forceOpen();

const opossum = new CircuitBreakerOpossum(noop, { timeout: false });
const opossumOpen = new CircuitBreakerOpossum(noop, { timeout: false });
opossumOpen.open();

const rows = [
  ['success', 'tripswitch', await perCall(() => tripswitch.call(noop))],
  ['success', 'opossum 10', await perCall(() => opossum.fire())],
  ['rejection', 'tripswitch', await perCall(() => swallow(tripswitchOpen.call(noop)))],
  ['rejection', 'opossum 10', await perCall(() => swallow(opossumOpen.fire()))],
];
console.log(`${N} calls each, async no-op function, Node ${process.version}\n`);
console.log('| path | breaker | per call |');
console.log('|---|---|---|');
for (const [path, name, ns] of rows) console.log(`| ${path} | ${name} | ${(ns / 1000).toFixed(2)} µs |`);
opossum.shutdown();
opossumOpen.shutdown();
