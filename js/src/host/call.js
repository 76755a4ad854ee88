// What the component's imports serve during one call into it. JavaScript
// runs one call at a time and the component calls its imports
// synchronously, so one slot per process is enough.

/** The call being served: its storage and the state changes it announced. */
export const current = {
  /** @type {import('../index.js').Storage | null} */
  storage: null,
  /** The component's state-change records, as announced. */
  announced: [],
};
