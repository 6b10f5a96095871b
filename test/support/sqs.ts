import {
  ReceiveMessageCommand,
  SendMessageBatchCommand,
  type Message,
  type SQSClient,
} from '@aws-sdk/client-sqs';

export interface OutgoingMessage {
  readonly body: string;
  readonly groupId: string;
  readonly dedupId: string;
}

/** Send messages in batches of 10 (in order), failing loudly on any failed entry. */
export async function sendAll(sqs: SQSClient, queueUrl: string, messages: readonly OutgoingMessage[]): Promise<void> {
  for (let i = 0; i < messages.length; i += 10) {
    const chunk = messages.slice(i, i + 10);
    const out = await sqs.send(
      new SendMessageBatchCommand({
        QueueUrl: queueUrl,
        Entries: chunk.map((m, j) => ({ Id: String(j), MessageBody: m.body, MessageGroupId: m.groupId, MessageDeduplicationId: m.dedupId })),
      }),
    );
    if (out.Failed && out.Failed.length > 0) throw new Error(`send failed: ${JSON.stringify(out.Failed)}`);
  }
}

/** Receive everything currently visible (DLQ inspection): short polls until one comes back empty. */
export async function drain(sqs: SQSClient, queueUrl: string, opts: { max?: number; waitSec?: number } = {}): Promise<Message[]> {
  const out: Message[] = [];
  for (;;) {
    const r = await sqs.send(
      new ReceiveMessageCommand({
        QueueUrl: queueUrl,
        MaxNumberOfMessages: 10,
        WaitTimeSeconds: opts.waitSec ?? 0,
        VisibilityTimeout: 60,
        MessageAttributeNames: ['All'],
        MessageSystemAttributeNames: ['All'],
      }),
    );
    if (!r.Messages || r.Messages.length === 0) return out;
    out.push(...r.Messages);
    if (opts.max && out.length >= opts.max) return out;
  }
}

/** Poll `predicate` until true or time out with a useful message. */
export async function eventually(predicate: () => boolean | Promise<boolean>, timeoutMs = 20_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await predicate()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
