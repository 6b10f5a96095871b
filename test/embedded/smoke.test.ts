import { describe, expect, it } from 'vitest';
import { setupTestStack } from '../support/stack.js';

describe('embedded stack', () => {
  it('bootstraps a prefix', async () => {
    const s = await setupTestStack('smoke');
    expect(s.url(s.names.queue('auth-requests'))).toContain('auth-requests.fifo');
    s.close();
  });
});
