import { defineConfig } from 'vitest/config';
import { refuseOldNode } from './bin/node-floor.js';

// `npm test` runs on the Node that `npm install` put in node_modules/.bin (package.json
// optionalDependencies); an older Node here means vitest was started some other way.
refuseOldNode('npm test');

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/support/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // Two cores: files run in parallel in a few forks; each file has its own resource prefix.
    maxWorkers: 3,
  },
});
