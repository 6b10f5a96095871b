/**
 * Preloaded (`node --import <this>`) into each worker a parent process starts (`payfleet start`,
 * `payfleet dev`): when the parent is gone (SIGKILL, a crash: the child is re-parented), the
 * worker shuts down gracefully. `tag` (letters, digits, dashes) is written into the command line,
 * so the parent's own workers can be told from any other payfleet's (`pgrep -f payfleet-<tag>`).
 */
export function orphanGuard(tag: string): string {
  if (!/^[a-z0-9-]+$/i.test(tag)) throw new RangeError(`orphan guard tag must be letters, digits and dashes: ${tag}`);
  return `data:text/javascript,${encodeURIComponent(
    `const tag="payfleet-${tag}";const p=process.ppid;setInterval(()=>{if(process.ppid!==p)process.kill(process.pid,"SIGTERM")},1000).unref();`,
  )}`;
}
