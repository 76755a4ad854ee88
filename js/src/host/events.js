// The component's `tripswitch:breaker/events` import: state changes are
// collected for the breaker being served, which tells its listeners after
// the call.

import { current } from './call.js';

export function stateChanged(change) {
  current.announced.push(change);
}
