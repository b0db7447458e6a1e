import { readdirSync, readFileSync } from 'node:fs'

/** Linux's clock ticks per second, as /proc counts CPU time (USER_HZ: 100 on every common build). */
const TICKS_PER_SECOND = 100

/**
 * CPU time (user + system, ms) that process `pid` and its descendants have used so far, read
 * from /proc; NaN where there is no /proc (not Linux) or the process is gone. 10 ms steps.
 */
export function processTreeCpuMs (pid: number): number {
  let own: number
  try {
    own = ownCpuMs(pid)
  } catch {
    return Number.NaN
  }
  let children: number[] = []
  try {
    children = childrenOf(pid)
  } catch {
    // it ended while this read: its own time is what it used
  }
  // a child that ended meanwhile counts nothing (its time is then in no one's total)
  return own + children.reduce((sum, child) => { const t = processTreeCpuMs(child); return Number.isNaN(t) ? sum : sum + t }, 0)
}

function ownCpuMs (pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  // fields after the command name (which may hold spaces): state is the 3rd field, utime the 14th
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / TICKS_PER_SECOND
}

/** Child process ids, over every thread (a thread that ends while this reads is skipped). */
function childrenOf (pid: number): number[] {
  return readdirSync(`/proc/${pid}/task`).flatMap(tid => {
    try {
      return readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').split(' ').filter(Boolean).map(Number)
    } catch {
      return []
    }
  })
}

/** CPU ms used during measured calls: this process's (first), then each of `pids`' trees. */
export class CpuTally {
  readonly ms: number[]
  readonly #pids: readonly number[]

  constructor (pids: readonly number[] = []) {
    this.#pids = pids
    this.ms = [0, ...pids.map(() => 0)]
  }

  async measure<T> (run: () => Promise<T>): Promise<T> {
    const own = process.cpuUsage()
    const before = this.#pids.map(processTreeCpuMs)
    const out = await run()
    const used = process.cpuUsage(own)
    this.ms[0] = (this.ms[0] as number) + (used.user + used.system) / 1000
    this.#pids.forEach((pid, i) => { this.ms[i + 1] = (this.ms[i + 1] as number) + processTreeCpuMs(pid) - (before[i] as number) })
    return out
  }
}
