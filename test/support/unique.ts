/** A key no other case (nor an earlier run on the same tables) uses. */
export const uniq = (label: string): string => `${label}-${Math.random().toString(36).slice(2, 10)}`;

/** The rejection of `p`; fails the case if `p` resolves. */
export async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error('expected a rejection');
}
