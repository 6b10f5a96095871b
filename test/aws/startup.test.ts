import { describe, expect, it } from 'vitest';
import { atStartup, worthWaitingFor } from '../../shared/aws/startup.js';

/** An SDK-shaped error. */
function sdkError(name: string, status?: number, code?: string): Error {
  return Object.assign(new Error(name), { name, ...(status ? { $metadata: { httpStatusCode: status } } : {}), ...(code ? { code } : {}) });
}

/** A call failing with `errors` in turn, then answering 'url'. */
function failing(errors: Error[]) {
  const calls = { n: 0 };
  const call = async () => {
    const e = errors[calls.n++];
    if (e) throw e;
    return 'url';
  };
  return { calls, call };
}

const quick = { minTimeoutMs: 1, maxTimeoutMs: 1 };

describe('atStartup', () => {
  it('waits out answers that are slow or busy (a timeout, a 503, throttling) and returns the answer, saying so each time', async () => {
    const warnings: string[] = [];
    const { calls, call } = failing([sdkError('TimeoutError'), sdkError('ServiceUnavailable', 503), sdkError('ThrottlingException', 400)]);
    const out = await atStartup('looking up queue q', call, { ...quick, log: { warn: (_o: unknown, msg: string) => warnings.push(msg) } as never });
    expect({ out, calls: calls.n, warnings }).toEqual({ out: 'url', calls: 4, warnings: Array(3).fill('looking up queue q: no answer yet; trying again') });
  });

  it('fails at once, with its own error, on what waiting cannot mend: nothing listening, a missing queue, refused credentials', async () => {
    for (const err of [sdkError('Error', undefined, 'ECONNREFUSED'), sdkError('QueueDoesNotExist', 400), sdkError('InvalidClientTokenId', 403)]) {
      const { calls, call } = failing([err]);
      await expect(atStartup('x', call, quick)).rejects.toBe(err);
      expect({ name: err.name, calls: calls.n }).toEqual({ name: err.name, calls: 1 });
    }
  });

  it('gives up after its retries with the last error', async () => {
    const last = sdkError('TimeoutError');
    const { calls, call } = failing([sdkError('TimeoutError'), sdkError('TimeoutError'), last]);
    await expect(atStartup('x', call, { ...quick, retries: 2 })).rejects.toBe(last);
    expect(calls.n).toBe(3);
  });

  it('worthWaitingFor: timeouts, 5xx and throttling; not connection refused or a 4xx', () => {
    expect(
      [sdkError('TimeoutError'), sdkError('InternalError', 500), sdkError('ThrottlingException', 400), sdkError('Error', undefined, 'ECONNREFUSED'), sdkError('AccessDenied', 403)].map(
        worthWaitingFor,
      ),
    ).toEqual([true, true, true, false, false]);
  });
});
