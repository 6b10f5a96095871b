import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/support/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // Two cores: files run in parallel in a few forks; each file has its own resource prefix.
    maxWorkers: 3,
    reporters: process.env.CI ? ['default'] : ['default'],
  },
});
