// Transpiles the breaker component (from `cargo xtask component`) into an ES
// module with jco, into dist/. With --if-needed, does nothing when dist/ is
// newer than the component.

import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const pkg = join(here, '..');
const root = join(pkg, '..');
const component = join(process.env.CARGO_TARGET_DIR ?? join(root, 'target'), 'components', 'tripswitch.wasm');
const out = join(pkg, 'dist');
const entry = join(out, 'tripswitch.js');

const ifNeeded = process.argv.includes('--if-needed');
if (!existsSync(component)) {
  console.error(`building the component: cargo xtask component`);
  execFileSync('cargo', ['xtask', 'component'], { cwd: root, stdio: 'inherit' });
}
if (ifNeeded && existsSync(entry) && statSync(entry).mtimeMs >= statSync(component).mtimeMs) {
  process.exit(0);
}
const jco = join(pkg, 'node_modules', '.bin', 'jco');
if (!existsSync(jco)) {
  console.error('jco is missing: run `npm ci` in js/ first');
  process.exit(1);
}
// The component imports nothing: src/steps.js performs its steps.
// Result errors are thrown as their payloads (no Error built per rejection);
// the component is ours, so lifted values are trusted.
execFileSync(
  jco,
  [
    'transpile', component, '--out-dir', out, '--name', 'tripswitch', '--quiet',
    '--no-component-error-wrapping', '--valid-lifting-optimization',
  ],
  { stdio: 'inherit' },
);

// jco 1.35's debug logger reads process.env on every call, which costs
// microseconds in Node; read JCO_DEBUG once instead. If the generated code
// changes shape, the file is left as it is.
const slowCheck = 'if (!globalThis?.process?.env?.JCO_DEBUG) { return; }';
const generated = readFileSync(entry, 'utf8');
if (generated.includes(slowCheck)) {
  const fastCheck = 'if (!JCO_DEBUG_ONCE) { return; }';
  const once = 'const JCO_DEBUG_ONCE = Boolean(globalThis?.process?.env?.JCO_DEBUG);\n';
  writeFileSync(entry, once + generated.replaceAll(slowCheck, fastCheck));
}
