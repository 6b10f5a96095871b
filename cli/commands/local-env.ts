/**
 * What a worker needs, beyond the AWS variables, to run on this machine against the sandboxes:
 * one list shared by `payfleet sandbox` (which prints it) and `payfleet dev` (which sets it).
 */

/**
 * The account payouts are paid from, in the LHV sandbox (the same as docker-compose.yml's). The
 * payout worker refuses to start without it; the sandbox accepts any valid IBAN and BIC.
 */
export const SANDBOX_DEBTOR_ENV: Readonly<Record<string, string>> = Object.freeze({
  LHV_DEBTOR_NAME: 'Payfleet Sandbox OU',
  LHV_DEBTOR_IBAN: 'EE717700771001735865',
  LHV_DEBTOR_BIC: 'LHVBEE22',
});

/**
 * Every variable the four workers need to use the sandboxes whose own variables are `sandboxEnv`
 * (cli/sandbox/serve.ts: token service, Stripe, Worldpay, LHV URL and credentials) — the
 * sandboxes' credentials are not secrets (they are in the sources and docker-compose.yml).
 */
export function sandboxWorkerEnv(sandboxEnv: Readonly<Record<string, string>>): Record<string, string> {
  return { ...sandboxEnv, ...SANDBOX_DEBTOR_ENV };
}
