// The component's `tripswitch:breaker/events` import: state changes are
// collected for the breaker being served, which tells its listeners after
// the call.

import { current } from './call.js';

export function stateChanged(breaker, previous, next, atMs, remote) {
  current.announced.push({ previous, current: next, atMs: Number(atMs), remote });
}
