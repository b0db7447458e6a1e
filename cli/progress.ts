import cliProgress from 'cli-progress'

/**
 * A progress bar on stderr for long loads; silent when stderr is not a terminal or the
 * load is small, so scripts and tests see clean output.
 */
export function loadProgress (label: string, totalBytes: number): { update: (done: number, total: number) => void, stop: () => void } {
  const show = process.stderr.isTTY === true && totalBytes > 64 * 2 ** 20
  if (!show) return { update: () => {}, stop: () => {} }
  const bar = new cliProgress.SingleBar({
    stream: process.stderr,
    format: `${label} [{bar}] {percentage}% | {done}/{all} MiB | eta {eta}s`,
    hideCursor: true,
    clearOnComplete: true
  }, cliProgress.Presets.shades_classic)
  const mib = (b: number): string => (b / 2 ** 20).toFixed(0)
  bar.start(totalBytes, 0, { done: '0', all: mib(totalBytes) })
  return {
    update: (done, total) => { bar.setTotal(total); bar.update(done, { done: mib(done), all: mib(total) }) },
    stop: () => { bar.stop() }
  }
}
