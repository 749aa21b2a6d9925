// Makes sure Debian's `chromium` is installed for the HTML flame graph test (headless, driven by
// playwright-core). Installs it with apt-get when missing and running as root; otherwise prints
// the exact command to run and exits 1. Prints the browser's path when it is available.
//
//   node scripts/ensure-chromium.mjs        (FLAMEWIRE_CHROMIUM overrides the path)

import { existsSync } from 'node:fs';
import { ensure } from './system-deps.mjs';

// Debian's package puts the browser here; the test uses the same default.
const chromiumPath = process.env.FLAMEWIRE_CHROMIUM || '/usr/bin/chromium';

ensure(
  [{ what: `chromium (${chromiumPath})`, present: () => existsSync(chromiumPath), pkg: 'chromium' }],
  'the HTML flame graph test',
);
console.log(chromiumPath);
