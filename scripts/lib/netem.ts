/**
 * Real kernel latency for benchmarks: a private network namespace whose loopback delays
 * every packet with the netem qdisc. Every packet crosses `lo` once, so a delay of L ms is
 * L ms one-way on every link (client <-> server and server <-> server alike).
 *
 * Needs root (or CAP_NET_ADMIN + CAP_SYS_ADMIN), iproute2 (`ip`, `tc`; Debian: apt-get install
 * iproute2) and a kernel with netem (CONFIG_NET_SCH_NETEM, module sch_netem). Latency 0 needs
 * no qdisc, only the namespace.
 */
import { execFileSync, spawn } from 'node:child_process'
import { existsSync } from 'node:fs'

/** Thrown when the machine cannot make the namespace or the qdisc; `code` says which. */
export class NetemUnavailableError extends Error {
  readonly code: 'NO_IPROUTE2' | 'NO_NETNS' | 'NO_NETEM'
  constructor (code: NetemUnavailableError['code'], message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = 'NetemUnavailableError'
    this.code = code
  }
}

function ip (...args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] })
}

function stderrOf (err: unknown): string {
  const e = err as { stderr?: Buffer | string, message?: string }
  return (e.stderr?.toString() ?? e.message ?? String(err)).trim()
}

/**
 * Creates namespace `name` with loopback up and, when `delayMs` > 0, `netem delay <delayMs>ms`
 * on it. Removes what it made before rethrowing a failure.
 */
export function createDelayedNamespace (name: string, delayMs: number): void {
  if (!['/usr/sbin/ip', '/sbin/ip', '/usr/bin/ip', '/bin/ip'].some(p => existsSync(p))) {
    throw new NetemUnavailableError('NO_IPROUTE2', 'Cannot use --netem: `ip`/`tc` are missing (Debian: apt-get update && apt-get install -y iproute2)')
  }
  try {
    ip('netns', 'add', name)
  } catch (err) {
    throw new NetemUnavailableError('NO_NETNS', `Cannot create network namespace ${name} (root needed): ${stderrOf(err)}`, { cause: err })
  }
  try {
    ip('netns', 'exec', name, 'ip', 'link', 'set', 'lo', 'up')
    if (delayMs > 0) {
      try {
        execFileSync('ip', ['netns', 'exec', name, 'tc', 'qdisc', 'add', 'dev', 'lo', 'root', 'netem', 'delay', `${delayMs}ms`], { stdio: ['ignore', 'ignore', 'pipe'] })
      } catch (err) {
        throw new NetemUnavailableError('NO_NETEM', `Cannot add netem delay ${delayMs}ms on lo: ${stderrOf(err)} ` +
          '(the kernel needs CONFIG_NET_SCH_NETEM / module sch_netem; check `zcat /proc/config.gz | grep NETEM`)', { cause: err })
      }
    }
  } catch (err) {
    deleteNamespace(name)
    throw err
  }
}

/** Deletes the namespace; quiet when it is already gone. */
export function deleteNamespace (name: string): void {
  try {
    ip('netns', 'del', name)
  } catch {}
}

/**
 * Runs `argv` inside a fresh namespace with `delayMs` of netem delay on loopback, stdout and
 * stderr passed through; the namespace is deleted afterwards, also when the command fails or
 * this process gets SIGINT/SIGTERM (forwarded to the child). Resolves with the exit code.
 */
export async function runInDelayedNamespace (name: string, delayMs: number, argv: readonly string[]): Promise<number> {
  createDelayedNamespace(name, delayMs)
  const forward = (signal: NodeJS.Signals): void => { child.kill(signal) }
  const child = spawn('ip', ['netns', 'exec', name, ...argv], { stdio: 'inherit' })
  process.on('SIGINT', forward)
  process.on('SIGTERM', forward)
  try {
    return await new Promise<number>((resolve, reject) => {
      child.once('error', reject)
      child.once('exit', (code, signal) => { resolve(code ?? (signal !== null ? 128 : 1)) })
    })
  } finally {
    process.off('SIGINT', forward)
    process.off('SIGTERM', forward)
    deleteNamespace(name)
  }
}
