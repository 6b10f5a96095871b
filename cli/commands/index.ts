import type { Command } from 'commander';

/** Adds a command (its options, help and action) to the program. */
export type Register = (program: Command) => void;

/**
 * Every command, and how to load it. Only the command being run is imported (with the AWS SDK,
 * zod, the emulators ... it needs); the others are listed by name, arguments and summary, which is
 * all `payfleet --help` shows. That keeps `--help` and `--version` from loading anything heavy
 * (docs/performance.md, "CLI start-up"). A new command adds one line here and exports a register
 * function; test/cli/startup.test.ts checks that this list matches what each module registers.
 */
export const COMMANDS: readonly { name: string; args: string; summary: string; load: () => Promise<Register> }[] = [
  {
    name: 'worker',
    args: '<name>',
    summary: 'run one worker process (auth | capture | refund | payout | ledger) until SIGTERM',
    load: async () => (await import('./worker.js')).registerWorker,
  },
  {
    name: 'stack',
    args: '',
    summary: 'the embedded SQS + DynamoDB emulators (`stack up`)',
    load: async () => (await import('./stack.js')).registerStack,
  },
  {
    name: 'bootstrap',
    args: '',
    summary: 'create or verify every queue, DLQ and table on the configured endpoint (idempotent)',
    load: async () => (await import('./bootstrap.js')).registerBootstrap,
  },
  {
    name: 'send',
    args: '<queue> [file]',
    summary: 'enqueue NDJSON messages as an upstream system would, ids derived per queue',
    load: async () => (await import('./send.js')).registerSend,
  },
  {
    name: 'dlq',
    args: '',
    summary: 'dead letters: list, show, redrive, purge',
    load: async () => (await import('./dlq.js')).registerDlq,
  },
  {
    name: 'charge',
    args: '<chargeId>',
    summary: "a charge's status, amount, processor reference, history and ledger events",
    load: async () => (await import('./charge.js')).registerCharge,
  },
  {
    name: 'refund',
    args: '<refundId>',
    summary: "a refund's status, amount, charge, history and ledger events",
    load: async () => (await import('./refund.js')).registerRefund,
  },
  {
    name: 'payout',
    args: '<paymentId>',
    summary: "a payout's status, history, batch and ledger events",
    load: async () => (await import('./payout.js')).registerPayout,
  },
  {
    name: 'events',
    args: '<resourceId>',
    summary: "a resource's ledger events; `events parity` compares with a consumer's record",
    load: async () => (await import('./events.js')).registerEvents,
  },
  {
    name: 'status',
    args: '',
    summary: 'the fleet on one screen: queues, DLQ letters by code, breakers, each worker\'s readiness',
    load: async () => (await import('./status.js')).registerStatus,
  },
  {
    name: 'sandbox',
    args: '',
    summary: 'the sandbox token service, Stripe, Worldpay and LHV in one process, until Ctrl-C',
    load: async () => (await import('./sandbox.js')).registerSandbox,
  },
  {
    name: 'dev',
    args: '',
    summary: 'the sandboxes and all four workers against a running stack, on their own ops ports, until Ctrl-C',
    load: async () => (await import('./dev.js')).registerDev,
  },
  {
    name: 'start',
    args: '',
    summary: 'the whole fleet on this machine with a demo load and a PASS/FAIL summary (`npm start`)',
    load: async () => (await import('./start.js')).registerStart,
  },
];
