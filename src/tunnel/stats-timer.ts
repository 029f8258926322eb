// When a worker thread tells the main thread its figures: at most every `intervalMs`, and only after it did work.
// A worker that posted on a fixed interval (setInterval) woke 5 times a second on an idle tunnel, each time building
// its figures to see whether they changed (issue 17's idle cost: 600 wake-ups a minute for the two tunnel threads).
// Here the first packet after a quiet spell arms one timer; when it fires the figures go out and nothing is armed
// until the next packet, so an idle worker sleeps in epoll/futex until there is traffic.

export interface StatsTimer {
  /** Something changed (a packet went through, a drop was counted): post the figures within intervalMs. */
  mark(): void
  /** No more posts (the worker stops). */
  stop(): void
}

export function statsTimer(intervalMs: number, post: () => void): StatsTimer {
  let armed: ReturnType<typeof setTimeout> | undefined
  let stopped = false
  const fire = (): void => {
    armed = undefined
    if (!stopped) post()
  }
  return {
    mark(): void {
      if (armed === undefined && !stopped) armed = setTimeout(fire, intervalMs)
    },
    stop(): void {
      stopped = true
      clearTimeout(armed)
      armed = undefined
    },
  }
}
