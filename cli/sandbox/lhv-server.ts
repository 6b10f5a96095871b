/**
 * Local LHV Connect sandbox (docs/contract.md §7; docs/lhv.md): the bank side of payouts, with the
 * effects counted so tests can prove "at most one initiation per payout".
 *
 *   GET  /heartbeat              200 <HeartBeatResponse>
 *   GET|POST /heartbeat/mq       202 + Message-Request-Id; queues a HEARTBEAT message
 *   POST /payment                pain.001.001.09 -> 400 with a reason | 202 + Message-Request-Id,
 *                                de-duplicated by MsgId (a repeat answers the ORIGINAL id, no new effect);
 *                                queues a pain.002.001.10 PAYMENT message per accepted request
 *   GET  /messages/next          oldest visible message (honours Filter-Response-Type); stays until deleted; 204 when none
 *   DELETE /messages/{id}        200, 404 when unknown
 *   GET  /__sandbox/stats        counters (see LhvSandboxStats)
 *   GET|POST|DELETE /__sandbox/faults   faults.ts config plus `responseDelayMs`, `followUpDelayMs`
 *
 * A repeated MsgId: `duplicateMode` 'replay' (default) answers 202 with the original id; 'reject' answers
 * 202 with a NEW id and queues a pain.002 GrpSts RJCT reason DU01 (how LHV's docs describe duplicates).
 *
 * Creditor magic (name, case-insensitive): REJECT -> RJCT AC04; NOFUNDS -> RJCT AM04; SLOW -> ACSP
 * now and ACSC in a second report after followUpDelayMs. Creditor IBAN ending in 0000 -> RJCT AC01.
 *
 * Plain http by default; pass `tls` for https that requires a client certificate signed by `tls.ca`.
 */
import { createHash, randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { z } from 'zod';
import { parsePain001 } from '../../workers/payout/lhv/pain001.js';
import { buildPain002, groupStatusOf } from '../../workers/payout/lhv/pain002.js';
import type { LhvSandboxInitiation, LhvSandboxStats, ParsedPain001, TransactionStatus } from '../../workers/payout/lhv/types.js';
import { FAULTS_ADMIN_PATH, faultConfigSchema, FaultInjector, type FaultConfig } from './faults.js';

export type { LhvSandboxInitiation, LhvSandboxStats } from '../../workers/payout/lhv/types.js';
import { readBody, readJson, sendJson, splitUrl, startHttpServer, type HttpServerOptions } from './http-server.js';

/** Options of {@link startLhvSandbox}. */
export interface LhvSandboxOptions extends HttpServerOptions {
  /** Initial fault config (faults.ts). @default no faults */
  readonly faults?: Partial<FaultConfig>;
  /** Delay before a PAYMENT (pain.002) message becomes visible on /messages/next. @default 0 */
  readonly responseDelayMs?: number;
  /** Delay between the first report and the follow-up report of a SLOW payout. @default 1000 */
  readonly followUpDelayMs?: number;
  /** What a repeated MsgId gets (see the header comment). @default 'replay' */
  readonly duplicateMode?: 'replay' | 'reject';
  /** https with mandatory client certificates (PEM). Absent: plain http. */
  readonly tls?: { readonly cert: string | Buffer; readonly key: string | Buffer; readonly ca: string | Buffer };
}

/** A running sandbox. */
export interface LhvSandbox {
  /** Base URL for `createLhvClient` (`http://127.0.0.1:port` or `https://127.0.0.1:port`). */
  readonly url: string;
  readonly faults: FaultInjector;
  stats(): LhvSandboxStats;
  initiations(): readonly LhvSandboxInitiation[];
  /** Change the pain.002 visibility delays / duplicate handling at run time. */
  configure(settings: LhvSandboxSettings): void;
  close(): Promise<void>;
}

interface QueuedMessage {
  readonly seq: number;
  readonly messageRequestId: string;
  readonly messageResponseId: string;
  readonly responseType: string;
  readonly body: string;
  readonly visibleAt: number;
}

const settingsSchema = z.object({
  responseDelayMs: z.number().int().min(0).max(3_600_000).optional(),
  followUpDelayMs: z.number().int().min(0).max(3_600_000).optional(),
  duplicateMode: z.enum(['replay', 'reject']).optional(),
});
/** Run-time settings besides faults (also accepted by POST /__sandbox/faults). */
export type LhvSandboxSettings = z.input<typeof settingsSchema>;

const hex = () => randomUUID().replace(/-/g, '');

/** What the sandbox bank decides for one transaction (first report; SLOW also gets a follow-up). */
export function sandboxDecision(tx: { creditorName: string; creditorIban: string }): {
  status: string;
  reasonCode?: string;
  reasonText?: string;
  slow?: true;
} {
  const name = tx.creditorName.toUpperCase();
  if (name.includes('REJECT')) return { status: 'RJCT', reasonCode: 'AC04', reasonText: 'Closed account number' };
  if (name.includes('NOFUNDS')) return { status: 'RJCT', reasonCode: 'AM04', reasonText: 'Insufficient funds' };
  if (tx.creditorIban.endsWith('0000')) return { status: 'RJCT', reasonCode: 'AC01', reasonText: 'Incorrect account number' };
  if (name.includes('SLOW')) return { status: 'ACSP', slow: true };
  return { status: 'ACSC' };
}

/** LHV's JSON error shape. */
function lhvError(res: ServerResponse, status: number, errorCode: string, description: string): void {
  sendJson(res, status, { errors: [{ errorCode, description }] });
}

/** Start the LHV Connect sandbox on a loopback port. */
export async function startLhvSandbox(options: LhvSandboxOptions = {}): Promise<LhvSandbox> {
  const faults = new FaultInjector({
    config: options.faults,
    renderError: (status) => ({
      errors: [
        { errorCode: status === 429 ? 'TOO_MANY_REQUESTS' : 'INTERNAL_ERROR', description: `sandbox fault: HTTP ${status}` },
      ],
    }),
  });
  const settings = {
    responseDelayMs: options.responseDelayMs ?? 0,
    followUpDelayMs: options.followUpDelayMs ?? 1000,
    duplicateMode: options.duplicateMode ?? 'replay',
  };
  const accepted = new Map<string, { messageRequestId: string; bodyHash: string; endToEndIds: string[]; acceptedAt: string }>();
  const messages: QueuedMessage[] = [];
  const perPayment: Record<string, number> = {};
  const byRoute: Record<string, number> = {};
  const deletedByType: Record<string, number> = {};
  const counters = {
    requests: 0,
    duplicatesDeduplicated: 0,
    conflictingDuplicates: 0,
    invalidRequests: 0,
    messagesQueued: 0,
    messagesDelivered: 0,
    messagesDeleted: 0,
  };
  let seq = 0;

  function queue(messageRequestId: string, responseType: string, body: string, delayMs: number): void {
    messages.push({
      seq: seq++,
      messageRequestId,
      messageResponseId: `RES${hex()}`,
      responseType,
      body,
      visibleAt: Date.now() + delayMs,
    });
    counters.messagesQueued += 1;
  }

  /** Record one new initiation and queue its status report(s). */
  function initiate(p: ParsedPain001, messageRequestId: string): void {
    const first: TransactionStatus[] = [];
    const followUp: TransactionStatus[] = [];
    for (const tx of p.transactions) {
      perPayment[tx.endToEndId] = (perPayment[tx.endToEndId] ?? 0) + 1;
      const { slow, ...decision } = sandboxDecision(tx);
      first.push({ endToEndId: tx.endToEndId, instrId: tx.instrId, ...decision });
      if (slow) followUp.push({ endToEndId: tx.endToEndId, instrId: tx.instrId, status: 'ACSC' });
    }
    const base = { originalMsgId: p.msgId, originalPaymentInformationId: p.paymentInformationId };
    const report = buildPain002({
      ...base,
      msgId: hex(),
      groupStatus: groupStatusOf(first.map((t) => t.status)),
      transactions: first,
    });
    queue(messageRequestId, 'PAYMENT', report, settings.responseDelayMs);
    if (followUp.length > 0) {
      // LHV sends GrpSts only in the first report; later ones carry transaction statuses only.
      queue(
        messageRequestId,
        'PAYMENT',
        buildPain002({ ...base, msgId: hex(), transactions: followUp }),
        settings.responseDelayMs + settings.followUpDelayMs,
      );
    }
  }

  async function payment(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
    let body: string;
    try {
      body = await readBody(req, 5 * 1024 * 1024);
    } catch {
      counters.invalidRequests += 1;
      return lhvError(res, 413, 'errStatement_RequestInvalid', 'request body too large');
    }
    const plan = faults.plan(path, 'POST');
    await faults.delay(plan, res);
    if (faults.before(plan, res)) return;
    let parsed: ParsedPain001;
    try {
      parsed = parsePain001(body);
    } catch (err) {
      counters.invalidRequests += 1;
      return lhvError(res, 400, 'errStatement_RequestInvalid', err instanceof Error ? err.message : 'invalid pain.001');
    }
    const key = req.headers['x-idempotency-key'];
    if (key !== parsed.msgId) {
      counters.invalidRequests += 1;
      return lhvError(res, 400, 'errIdempotencyKey_Mismatch', 'X-Idempotency-Key must be present and equal GrpHdr/MsgId');
    }
    const bodyHash = createHash('sha256').update(body).digest('hex');
    let entry = accepted.get(parsed.msgId);
    let answerId = entry?.messageRequestId;
    if (entry) {
      counters.duplicatesDeduplicated += 1;
      if (entry.bodyHash !== bodyHash) counters.conflictingDuplicates += 1;
      if (settings.duplicateMode === 'reject') {
        answerId = `REQ${hex()}`;
        const reject = {
          msgId: hex(),
          originalMsgId: parsed.msgId,
          groupStatus: 'RJCT',
          groupReasonCode: 'DU01',
          transactions: [],
        };
        queue(
          answerId,
          'PAYMENT',
          buildPain002({ ...reject, groupReasonText: 'Duplicate message ID' }),
          settings.responseDelayMs,
        );
      }
    } else {
      entry = {
        messageRequestId: `REQ${hex()}`,
        bodyHash,
        endToEndIds: parsed.transactions.map((t) => t.endToEndId),
        acceptedAt: new Date().toISOString(),
      };
      accepted.set(parsed.msgId, entry);
      initiate(parsed, entry.messageRequestId);
      answerId = entry.messageRequestId;
    }
    // After the effect: a hang or reset here is "accepted, but the 202 was lost".
    if (faults.after(plan, res)) return;
    res.writeHead(202, {
      'message-request-id': answerId ?? entry.messageRequestId,
      'x-bank-code': 'LHVEE',
      'content-length': '0',
    });
    res.end();
  }

  async function heartbeatMq(res: ServerResponse, path: string, method: string): Promise<void> {
    const plan = faults.plan(path, method);
    await faults.delay(plan, res);
    if (faults.before(plan, res)) return;
    const id = `REQ${hex()}`;
    const body = `<HeartBeatResponse><TimeStamp>${new Date().toISOString()}</TimeStamp><AuthorizedUser><Name>payfleet sandbox</Name><Code>00000000</Code></AuthorizedUser></HeartBeatResponse>`;
    queue(id, 'HEARTBEAT', body, 0);
    if (faults.after(plan, res)) return;
    res.writeHead(202, { 'message-request-id': id, 'x-bank-code': 'LHVEE', 'content-length': '0' });
    res.end();
  }

  /** A read-only route: its "after success" faults are a hang or reset before the answer. */
  async function readOnly(res: ServerResponse, path: string, respond: () => void): Promise<void> {
    const plan = faults.plan(path, 'GET');
    await faults.delay(plan, res);
    if (faults.before(plan, res) || faults.after(plan, res)) return;
    respond();
  }

  function nextMessage(req: IncomingMessage, res: ServerResponse): void {
    const filter = req.headers['filter-response-type'];
    const now = Date.now();
    const msg = messages.find((m) => m.visibleAt <= now && (filter === undefined || filter === '' || m.responseType === filter));
    if (!msg) {
      res.writeHead(204, { 'x-bank-code': 'LHVEE' });
      res.end();
      return;
    }
    counters.messagesDelivered += 1;
    res.writeHead(200, {
      'content-type': 'application/xml',
      'content-length': Buffer.byteLength(msg.body),
      'message-request-id': msg.messageRequestId,
      'message-response-id': msg.messageResponseId,
      'message-response-type': msg.responseType,
      'x-bank-code': 'LHVEE',
    });
    res.end(msg.body);
  }

  async function deleteMessage(res: ServerResponse, path: string, id: string): Promise<void> {
    const plan = faults.plan(path, 'DELETE');
    await faults.delay(plan, res);
    if (faults.before(plan, res)) return;
    const i = messages.findIndex((m) => m.messageResponseId === id);
    if (i >= 0) {
      const [gone] = messages.splice(i, 1);
      counters.messagesDeleted += 1;
      if (gone) deletedByType[gone.responseType] = (deletedByType[gone.responseType] ?? 0) + 1;
    }
    // Deleted, answer lost: a retry sees 404 (already deleted), as with LHV.
    if (faults.after(plan, res)) return;
    if (i < 0) return lhvError(res, 404, 'NOT_FOUND', 'Requested resource not found');
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '2', 'x-bank-code': 'LHVEE' });
    res.end('OK');
  }

  async function admin(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (req.method === 'POST') {
      let body: unknown;
      try {
        body = (await readJson(req)) ?? {};
      } catch {
        return sendJson(res, 400, { error: { message: 'body must be JSON' } });
      }
      if (typeof body !== 'object' || body === null || Array.isArray(body))
        return sendJson(res, 400, { error: { message: 'body must be a JSON object' } });
      const { responseDelayMs, followUpDelayMs, duplicateMode, ...rest } = body as Record<string, unknown>;
      const lhv = settingsSchema.safeParse({ responseDelayMs, followUpDelayMs, duplicateMode });
      const f = faultConfigSchema.safeParse({ ...faults.config, ...rest });
      if (!lhv.success || !f.success) {
        const issues = [...(lhv.error?.issues ?? []), ...(f.error?.issues ?? [])].map(
          (i) => `${i.path.join('.') || '(config)'}: ${i.message}`,
        );
        return sendJson(res, 400, { error: { message: issues.join('; ') } });
      }
      faults.update(rest);
      configure(lhv.data);
    } else if (req.method === 'DELETE') {
      faults.reset();
    } else if (req.method !== 'GET') {
      return sendJson(res, 405, { error: { message: 'use GET, POST or DELETE' } }, { allow: 'GET, POST, DELETE' });
    }
    sendJson(res, 200, { config: { ...faults.config, ...settings }, injected: faults.injected, hanging: faults.hanging });
  }

  function configure(s: LhvSandboxSettings): void {
    const parsed = settingsSchema.parse(s);
    if (parsed.responseDelayMs !== undefined) settings.responseDelayMs = parsed.responseDelayMs;
    if (parsed.followUpDelayMs !== undefined) settings.followUpDelayMs = parsed.followUpDelayMs;
    if (parsed.duplicateMode !== undefined) settings.duplicateMode = parsed.duplicateMode;
  }

  function stats(): LhvSandboxStats {
    const perPaymentId = { ...perPayment };
    const pendingByType: Record<string, number> = {};
    for (const m of messages) pendingByType[m.responseType] = (pendingByType[m.responseType] ?? 0) + 1;
    return {
      ...counters,
      byRoute: { ...byRoute },
      initiations: accepted.size,
      initiationsPerPaymentId: perPaymentId,
      messagesDeletedByType: { ...deletedByType },
      pendingMessages: messages.length,
      pendingMessagesByType: pendingByType,
      faultsInjected: faults.injected,
    };
  }

  function initiations(): LhvSandboxInitiation[] {
    return [...accepted].map(([msgId, e]) => ({
      msgId,
      messageRequestId: e.messageRequestId,
      endToEndIds: [...e.endToEndIds],
      acceptedAt: e.acceptedAt,
    }));
  }

  const handler = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const { path } = splitUrl(req);
    const method = req.method ?? 'GET';
    if (path === FAULTS_ADMIN_PATH) return admin(req, res);
    if (path === '/__sandbox/stats' && method === 'GET') return sendJson(res, 200, stats());
    if (path === '/__sandbox/initiations' && method === 'GET') return sendJson(res, 200, initiations());
    const deleteMatch = /^\/messages\/([^/]+)$/.exec(path);
    const route = deleteMatch && method === 'DELETE' ? 'DELETE /messages/{id}' : `${method} ${path}`;
    counters.requests += 1;
    byRoute[route] = (byRoute[route] ?? 0) + 1;
    if (route !== 'POST /payment') for await (const _ of req); // drain so the keep-alive socket stays usable
    if (route === 'POST /payment') return payment(req, res, path);
    if (route === 'GET /heartbeat/mq' || route === 'POST /heartbeat/mq') return heartbeatMq(res, path, method);
    if (route === 'GET /heartbeat') {
      return readOnly(res, path, () => {
        const body = `<HeartBeatResponse><TimeStamp>${new Date().toISOString()}</TimeStamp></HeartBeatResponse>`;
        res.writeHead(200, {
          'content-type': 'application/xml',
          'content-length': Buffer.byteLength(body),
          'x-bank-code': 'LHVEE',
        });
        res.end(body);
      });
    }
    if (route === 'GET /messages/next') return readOnly(res, path, () => nextMessage(req, res));
    if (route === 'DELETE /messages/{id}' && deleteMatch?.[1])
      return deleteMessage(res, path, decodeURIComponent(deleteMatch[1]));
    return lhvError(res, 404, 'NOT_FOUND', `no such endpoint: ${method} ${path}`);
  };

  const server = options.tls ? await startHttpsServer(handler, options) : await startHttpServer(handler, options);
  return {
    url: server.url,
    faults,
    stats,
    initiations,
    configure,
    async close() {
      faults.releaseHanging();
      await server.close();
    },
  };
}

/** https variant of http-server.ts#startHttpServer with mandatory, CA-verified client certificates. */
async function startHttpsServer(
  handler: (req: IncomingMessage, res: ServerResponse) => Promise<void>,
  options: LhvSandboxOptions,
): Promise<{ url: string; close(): Promise<void> }> {
  const tls = options.tls as NonNullable<LhvSandboxOptions['tls']>;
  const server = createHttpsServer(
    { cert: tls.cert, key: tls.key, ca: tls.ca, requestCert: true, rejectUnauthorized: true, keepAlive: true },
    (req, res) => {
      handler(req, res).catch((err: unknown) => {
        if (res.headersSent) return void res.destroy();
        lhvError(res, 500, 'INTERNAL_ERROR', `sandbox handler failed: ${err instanceof Error ? err.message : String(err)}`);
      });
    },
  );
  server.keepAliveTimeout = options.keepAliveTimeoutMs ?? 5_000;
  server.requestTimeout = 0;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  let closing: Promise<void> | undefined;
  return {
    // The certificate must carry IP SAN 127.0.0.1 (`localhost` may resolve to ::1 first).
    url: `https://127.0.0.1:${port}`,
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}
