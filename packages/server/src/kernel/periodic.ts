/**
 * Runs `task` every `ms` in the background, never two runs at once: a tick that comes while
 * the last run is still going is skipped. A failed run goes to `onError`, and the next tick
 * runs again. `stopped` is asked on each tick (a component shutting down). The timer does
 * not keep the process alive; clear it with `clearInterval`.
 */
export function runPeriodically(ms: number, task: () => Promise<unknown>, options: { stopped: () => boolean; onError: (error: unknown) => void }): NodeJS.Timeout {
  let busy = false;
  const timer = setInterval(() => {
    if (busy || options.stopped()) return;
    busy = true;
    task()
      .catch(options.onError)
      .finally(() => (busy = false));
  }, ms);
  timer.unref();
  return timer;
}
