#!/usr/bin/env node
// The `payfleet` command. In a checkout it runs the TypeScript sources through tsx, so there is no
// build step to forget; in the container image (no sources, no tsx) it runs the compiled dist/.
import { existsSync } from 'node:fs';

// payfleet supports Node >= 20; the SDK's notice about its own future Node 22 floor is noise here
// (the container image runs the current LTS). See docs/operations.md.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

const source = new URL('../workers/cli.ts', import.meta.url);
const compiled = new URL('../dist/workers/cli.js', import.meta.url);

if (existsSync(source)) {
  const { register } = await import('tsx/esm/api');
  register();
  await import(source.href);
} else if (existsSync(compiled)) {
  await import(compiled.href);
} else {
  process.stderr.write('payfleet: neither workers/cli.ts nor dist/workers/cli.js exists; run `npm run build`\n');
  process.exit(2);
}
