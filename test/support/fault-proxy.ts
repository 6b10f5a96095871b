/**
 * An HTTP proxy in front of an AWS emulator endpoint (DynamoDB Local, fauxqs) with faults a test
 * switches on and off while clients keep talking to it:
 *
 *   pass        forward every request, answer every response
 *   refuse      stop accepting: the listening socket is closed and open connections are destroyed
 *               (a request caught on one sees ECONNRESET), so new connections fail with
 *               ECONNREFUSED (until `pass()`)
 *   blackhole   accept and read each request, never forward it, never answer
 *
 * and, on top of pass, fault RULES (`inject([...])`) that pick requests by operation, an optional
 * predicate on the request (a table, a key) and a rate (every Nth matching call per operation, the
 * first N, a seeded probability), and give each picked request one fault:
 *
 *   lose        the request is FORWARDED, the emulator applies it and answers, and that answer is
 *               thrown away: the client sees no answer at all ('hang', the socket stays open) or a
 *               reset connection ('reset')
 *   throughput  NOT forwarded; answered as DynamoDB answers a refused request (aws-faults.ts):
 *   throttling  ProvisionedThroughputExceededException / ThrottlingException (400),
 *   internal    InternalServerError (500),
 *   conflict    TransactionCanceledException with a TransactionConflict reason (a transaction) or
 *               TransactionConflictException (a single-item write) (400),
 *   unprocessed a BatchWriteItem answered 200 with every item in UnprocessedItems
 *
 * "Applied but never answered" is the fault that matters for exactly-once: the write happened,
 * the writer does not know it, and its retry must be recognised as the same request.
 *
 *   client ── TransactWriteItems ──▶ proxy ──▶ DynamoDB Local  (applied)
 *   client ◀ · · · nothing · · · ·  proxy ◀── 200 OK           (swallowed; counted in stats().lost)
 *   client ── (deadline) retry, same body ──▶ proxy ──▶ DynamoDB Local: same ClientRequestToken → 200, not applied again
 *
 * The operation of a request is read from `x-amz-target` (JSON protocols: `DynamoDB_20120810.PutItem`,
 * `AmazonSQS.ReceiveMessage`) or the `Action` of a query-protocol body. Every request is kept in
 * `requests` (operation, body, fate, fault) so a test can check that a retry was byte-identical.
 */
import { synthesise, type SynthesisedFault } from './aws-faults.js';
import { createServer, request as httpRequest, Agent, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export type ProxyMode = 'pass' | 'refuse' | 'blackhole';

/** What the proxy knows about one request, for predicates and for the test's evidence. */
export interface ProxiedRequest {
  /** `TransactWriteItems`, `UpdateItem`, `ReceiveMessage`, ... (undefined if not an AWS call). */
  readonly operation: string | undefined;
  readonly method: string;
  readonly path: string;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  /** The request body as sent (JSON for DynamoDB and SQS). */
  readonly body: string;
}

export type RequestFate =
  /** forwarded and answered */
  | 'answered'
  /** forwarded, applied upstream, answer withheld ('hang') or connection reset ('reset') */
  | 'lost'
  /** never forwarded (blackhole) */
  | 'blackholed'
  /** never forwarded; answered with a synthesised AWS error (`fault` says which) */
  | 'injected'
  /** the upstream could not be reached (the client got a 502) */
  | 'upstream-error'
  /** still in flight */
  | 'pending';

export interface LoggedRequest extends ProxiedRequest {
  readonly seq: number;
  fate: RequestFate;
  /** The upstream's HTTP status, when it answered (or the synthesised status of an injected fault). */
  status?: number;
  /** The fault a rule gave this request, if any. */
  fault?: Fault;
}

/** What a rule does to a request it picks: lose the answer of an applied write, or refuse it as AWS would. */
export type Fault = 'lose' | SynthesisedFault;

/** Which requests a rule picks, and how often. Rates are counted per rule, per operation. */
export interface FaultSelector {
  /** Only these operations (e.g. ['TransactWriteItems']). @default every operation */
  readonly operations?: readonly string[];
  /** A further filter, e.g. on the body (a table name, a key). @default none */
  readonly match?: (req: ProxiedRequest) => boolean;
  /** Pick every Nth matching request of each operation (3: the 3rd, 6th, ...). @default 1 (each) */
  readonly every?: number;
  /** Pick at most N requests after the rule is set, then pass. @default unlimited */
  readonly first?: number;
  /** Pick each (otherwise picked) request with this probability (seeded, reproducible). @default 1 */
  readonly probability?: number;
  /** Seed of the RNG used with `probability`. @default 1 */
  readonly seed?: number;
}

export interface FaultRule extends FaultSelector {
  readonly fault: Fault;
  /** `lose` only. 'hang': never answer, keep the socket open; 'reset': destroy the socket. @default 'hang' */
  readonly how?: 'hang' | 'reset';
  /**
   * `conflict` on TransactWriteItems only: the index of the item that reports TransactionConflict
   * (modulo the item count). @default rotating: the Nth injected conflict names item N
   */
  readonly conflictItem?: number;
}

/** `loseAnswers(rule)`: a `lose` rule. */
export type LoseRule = Omit<FaultRule, 'fault' | 'conflictItem'>;

export interface FaultProxyStats {
  /** Requests seen per operation (every fate). */
  readonly seen: Readonly<Record<string, number>>;
  /** Requests forwarded to the upstream per operation (answered or lost). */
  readonly forwarded: Readonly<Record<string, number>>;
  /** Requests applied upstream whose answer the client never got, per operation. */
  readonly lost: Readonly<Record<string, number>>;
  /** Requests swallowed by the blackhole, per operation. */
  readonly blackholed: Readonly<Record<string, number>>;
  /** Requests answered with a synthesised error (never forwarded), per operation. */
  readonly injected: Readonly<Record<string, number>>;
  /** Requests each fault was given (lose included), per fault, per operation. */
  readonly faults: Readonly<Record<string, Readonly<Record<string, number>>>>;
}

export interface FaultProxy {
  /** `http://127.0.0.1:<port>`: point the client's endpoint here. */
  readonly url: string;
  readonly port: number;
  readonly mode: ProxyMode;
  /** Every request seen, in arrival order (bodies included). */
  readonly requests: readonly LoggedRequest[];
  /** Forward everything (also: start accepting again after `refuse()`). Keeps the fault rules. */
  pass(): Promise<void>;
  /** Stop accepting connections; open ones are destroyed. */
  refuse(): Promise<void>;
  /** Accept requests and never answer them (they are answered by nothing, ever). */
  blackhole(): Promise<void>;
  /**
   * Replace the fault rules (an empty list or `undefined` clears them). A request is judged by the
   * first rule whose `operations` and `match` accept it; only that rule counts it.
   */
  inject(rules: readonly FaultRule[] | undefined): void;
  /** Lose the answers of matching requests after applying them: `inject([{ fault: 'lose', ...rule }])`; `undefined` clears every rule. */
  loseAnswers(rule: LoseRule | undefined): void;
  stats(): FaultProxyStats;
  /** Stop the proxy and destroy every connection (held ones included). */
  close(): Promise<void>;
}

/** The operation named by an AWS request: `x-amz-target` suffix, or a query body's `Action`. */
export function awsOperation(headers: Readonly<Record<string, string | string[] | undefined>>, body: string): string | undefined {
  const target = headers['x-amz-target'];
  const t = Array.isArray(target) ? target[0] : target;
  if (t) return t.slice(t.lastIndexOf('.') + 1);
  const m = /(?:^|&)Action=([A-Za-z]+)/.exec(body);
  return m?.[1];
}

/** mulberry32: a tiny seeded RNG, so a probabilistic fault run can be repeated exactly. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Start a proxy on 127.0.0.1 (a free port unless `port` is given) in front of `upstream`. */
export async function startFaultProxy(upstream: string, options: { port?: number } = {}): Promise<FaultProxy> {
  const target = new URL(upstream);
  const agent = new Agent({ keepAlive: true, maxSockets: 256 });
  const sockets = new Set<Socket>();
  const requests: LoggedRequest[] = [];
  type Counted = 'seen' | 'forwarded' | 'lost' | 'blackholed' | 'injected';
  const counters: Record<Counted, Record<string, number>> = { seen: {}, forwarded: {}, lost: {}, blackholed: {}, injected: {} };
  const byFault: Record<string, Record<string, number>> = {};
  const bump = (r: Record<string, number>, op: string | undefined) => {
    const k = op ?? '(none)';
    r[k] = (r[k] ?? 0) + 1;
  };
  const count = (what: Counted, op: string | undefined) => bump(counters[what], op);
  let mode: ProxyMode = 'pass';
  interface ActiveRule {
    readonly spec: FaultRule;
    left: number;
    readonly random: () => number;
    /** Matching requests seen per operation (for `every`). */
    readonly matched: Record<string, number>;
    /** Requests this rule gave its fault (rotates the conflicting item). */
    fired: number;
  }
  let rules: ActiveRule[] = [];

  /** The rule that picks `req` (and how many it picked before), or undefined: pass it. */
  function pick(req: ProxiedRequest): { rule: FaultRule; nth: number } | undefined {
    const r = rules.find(
      ({ spec }) => (!spec.operations || spec.operations.includes(req.operation ?? '')) && (!spec.match || spec.match(req)),
    );
    if (!r) return undefined;
    const op = req.operation ?? '(none)';
    r.matched[op] = (r.matched[op] ?? 0) + 1;
    const { spec } = r;
    if (r.matched[op] % Math.max(1, spec.every ?? 1) !== 0) return undefined;
    if (r.left <= 0) return undefined;
    if (spec.probability !== undefined && r.random() >= spec.probability) return undefined;
    r.left -= 1;
    r.fired += 1;
    return { rule: spec, nth: r.fired - 1 };
  }

  /** Answer `entry` with DynamoDB's own refusal; nothing reaches the emulator. */
  function refuseAsAws(res: ServerResponse, entry: LoggedRequest, fault: SynthesisedFault, conflictItem: number): void {
    const a = synthesise(fault, entry.operation, entry.body, conflictItem);
    entry.fate = 'injected';
    entry.status = a.status;
    count('injected', entry.operation);
    res.writeHead(a.status, a.headers);
    res.end(a.body);
  }

  function forward(req: IncomingMessage, res: ServerResponse, entry: LoggedRequest, body: Buffer): void {
    const picked = pick(entry);
    if (picked) {
      entry.fault = picked.rule.fault;
      byFault[picked.rule.fault] ??= {};
      bump(byFault[picked.rule.fault]!, entry.operation);
      if (picked.rule.fault !== 'lose') {
        refuseAsAws(res, entry, picked.rule.fault, picked.rule.conflictItem ?? picked.nth);
        return;
      }
    }
    const lose = picked ? (picked.rule.how ?? 'hang') : undefined;
    count('forwarded', entry.operation);
    const up = httpRequest(
      {
        protocol: target.protocol,
        hostname: target.hostname,
        port: target.port,
        method: req.method,
        path: req.url,
        // Unchanged, host included: the client signed these headers.
        headers: req.headers,
        agent,
      },
      (upRes) => {
        const chunks: Buffer[] = [];
        upRes.on('data', (c: Buffer) => chunks.push(c));
        upRes.on('end', () => {
          entry.status = upRes.statusCode ?? 0;
          if (lose) {
            // The upstream has applied the request and answered; the client hears nothing.
            entry.fate = 'lost';
            count('lost', entry.operation);
            if (lose === 'reset') req.socket.destroy();
            return;
          }
          entry.fate = 'answered';
          res.writeHead(upRes.statusCode ?? 502, upRes.headers);
          res.end(Buffer.concat(chunks));
        });
        upRes.on('error', () => fail());
      },
    );
    const fail = () => {
      entry.fate = 'upstream-error';
      if (!res.headersSent && !res.destroyed) {
        res.writeHead(502, { 'content-type': 'text/plain' });
        res.end('fault proxy: upstream unreachable');
      }
    };
    up.on('error', fail);
    up.end(body);
  }

  function onRequest(req: IncomingMessage, res: ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const text = body.toString('utf8');
      const entry: LoggedRequest = {
        seq: requests.length,
        operation: awsOperation(req.headers, text),
        method: req.method ?? 'GET',
        path: req.url ?? '/',
        headers: { ...req.headers },
        body: text,
        fate: 'pending',
      };
      requests.push(entry);
      count('seen', entry.operation);
      if (mode === 'blackhole') {
        entry.fate = 'blackholed';
        count('blackholed', entry.operation);
        return; // never answered; the socket stays open until the client gives up or close()
      }
      forward(req, res, entry, body);
    });
  }

  const server: Server = createServer(onRequest);
  // Long enough that the proxy never closes an idle keep-alive socket under a client about to reuse it.
  server.keepAliveTimeout = 120_000;
  server.requestTimeout = 0;
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });

  const listen = (port: number) =>
    new Promise<number>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        server.off('error', reject);
        resolve((server.address() as AddressInfo).port);
      });
    });
  const stopListening = () => new Promise<void>((resolve) => (server.listening ? server.close(() => resolve()) : resolve()));
  const destroyConnections = () => {
    for (const s of sockets) s.destroy();
    sockets.clear();
  };

  const port = await listen(options.port ?? 0);
  const inject = (specs: readonly FaultRule[] | undefined) => {
    rules = (specs ?? []).map((spec) => ({
      spec,
      left: spec.first ?? Number.POSITIVE_INFINITY,
      random: seededRandom(spec.seed ?? 1),
      matched: {},
      fired: 0,
    }));
  };

  return {
    url: `http://127.0.0.1:${port}`,
    port,
    get mode() {
      return mode;
    },
    requests,
    async pass() {
      mode = 'pass';
      if (!server.listening) await listen(port);
    },
    async refuse() {
      mode = 'refuse';
      const closed = stopListening();
      destroyConnections();
      await closed;
      // Let clients in this process see the FINs, so their pools drop the dead keep-alive sockets.
      await new Promise((r) => setTimeout(r, 50));
    },
    async blackhole() {
      mode = 'blackhole';
      if (!server.listening) await listen(port);
    },
    inject,
    loseAnswers(spec) {
      inject(spec ? [{ ...spec, fault: 'lose' }] : undefined);
    },
    stats() {
      const copy = (r: Record<string, number>) => ({ ...r });
      return {
        seen: copy(counters.seen),
        forwarded: copy(counters.forwarded),
        lost: copy(counters.lost),
        blackholed: copy(counters.blackholed),
        injected: copy(counters.injected),
        faults: Object.fromEntries(Object.entries(byFault).map(([f, r]) => [f, copy(r)])),
      };
    },
    async close() {
      const closed = stopListening();
      destroyConnections();
      await closed;
      agent.destroy();
    },
  };
}
