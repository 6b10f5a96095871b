import { TerminalError } from '../../shared/errors.js';
import type { ProcessorConnector, RefundPort } from '../../shared/connectors/types.js';

/**
 * The refund side of a processor connector (shared/connectors/types.ts `RefundPort`). Every
 * connector is to implement it beside ProcessorConnector; this reads it off the connector and
 * refuses clearly when one does not (yet), before any refund is created, so nothing is reserved
 * against the charge for a processor that cannot refund.
 */
export function refundsOf(connector: ProcessorConnector): RefundPort {
  const c = connector as ProcessorConnector & Partial<RefundPort>;
  const { refund, lookupRefund } = c;
  if (typeof refund !== 'function' || typeof lookupRefund !== 'function') {
    throw new TerminalError(
      'REFUNDS_NOT_SUPPORTED',
      `the ${connector.name} connector has no refund port (refund and lookupRefund); nothing was refunded or reserved`,
    );
  }
  return { refund: refund.bind(connector), lookupRefund: lookupRefund.bind(connector) };
}
