// Notice pages (film not found): only the account bar.

import { startShell } from './shell.js';

await startShell();
