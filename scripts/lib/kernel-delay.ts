/**
 * Real kernel latency for benchmarks: a private network namespace in which every packet on
 * loopback is held L ms. Every packet crosses `lo` once, so that is L ms one-way on every link
 * (client <-> server and server <-> server alike), applied to real TCP segments and ACKs.
 *
 * Two ways to hold packets, tried in this order:
 * - `netem`: `tc qdisc add dev lo root netem delay L ms` (kernel needs CONFIG_NET_SCH_NETEM).
 * - `nfqueue`: `iptables-legacy -A OUTPUT -o lo -j NFQUEUE` hands each packet to a small C
 *   helper (scripts/lib/nfqueue-delay.c, compiled with `cc` into .cache/bin on first use) that
 *   lets it go L ms later. For kernels without netem but with CONFIG_NETFILTER_XT_TARGET_NFQUEUE,
 *   such as this project's VMs. The helper is one more process taking CPU per packet.
 *
 * Either way TCP autocorking is turned off in the namespace. A held packet stays charged to
 * its socket until it is let go, and autocorking holds every later small write on that
 * socket until then: a message sent within L ms of the previous one on the same connection
 * waited up to L ms more before its own L ms. A real link frees a packet once it is on the
 * wire, so only runs with many messages in flight (the pipelined modes) paid for it: 4-9%
 * of their speed at 20 ms, where plain and sync lost 0-4%.
 *
 * Needs root (or CAP_NET_ADMIN + CAP_SYS_ADMIN) and iproute2; nfqueue also needs iptables
 * (Debian: apt-get install -y iproute2 iptables) and a C compiler. Latency 0 needs only the
 * namespace.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdirSync, statSync } from 'node:fs'
import { connect, createServer, type AddressInfo } from 'node:net'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { median } from './bench-output.js'

export type KernelDelayKind = 'netem' | 'nfqueue'

/** Thrown when the machine cannot make the namespace or hold its packets; `code` says which. */
export class KernelDelayUnavailableError extends Error {
  readonly code: 'NO_IPROUTE2' | 'NO_NETNS' | 'NO_DELAY'
  constructor (code: KernelDelayUnavailableError['code'], message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = 'KernelDelayUnavailableError'
    this.code = code
  }
}

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const HELPER_SOURCE = join(ROOT, 'scripts', 'lib', 'nfqueue-delay.c')
const HELPER = join(ROOT, '.cache', 'bin', 'nfqueue-delay')
const QUEUE = '0' // each namespace has its own queues

/** A namespace with its delay in place; `close()` removes both. */
export interface DelayedNamespace {
  readonly kind: KernelDelayKind | 'none'
  close: () => Promise<void>
}

function run (command: string, args: readonly string[]): void {
  execFileSync(command, args, { stdio: ['ignore', 'ignore', 'pipe'] })
}

function stderrOf (err: unknown): string {
  const e = err as { stderr?: Buffer | string, message?: string }
  return (e.stderr?.toString() ?? e.message ?? String(err)).trim()
}

/** Deletes the namespace; quiet when it is already gone. */
function deleteNamespace (name: string): void {
  try {
    run('ip', ['netns', 'del', name])
  } catch {}
}

/**
 * Creates namespace `name` with loopback up and, when `delayMs` > 0, every loopback packet held
 * `delayMs` — by netem where the kernel has it, else through NFQUEUE. Removes what it made
 * before rethrowing a failure.
 */
export async function createDelayedNamespace (name: string, delayMs: number): Promise<DelayedNamespace> {
  if (!['/usr/sbin/ip', '/sbin/ip', '/usr/bin/ip', '/bin/ip'].some(p => existsSync(p))) {
    throw new KernelDelayUnavailableError('NO_IPROUTE2', 'Cannot make a delayed namespace: `ip`/`tc` are missing (Debian: apt-get update && apt-get install -y iproute2)')
  }
  try {
    run('ip', ['netns', 'add', name])
  } catch (err) {
    throw new KernelDelayUnavailableError('NO_NETNS', `Cannot create network namespace ${name} (root needed): ${stderrOf(err)}`, { cause: err })
  }
  try {
    run('ip', ['netns', 'exec', name, 'ip', 'link', 'set', 'lo', 'up'])
    run('ip', ['netns', 'exec', name, 'sh', '-c', 'f=/proc/sys/net/ipv4/tcp_autocorking; [ ! -e $f ] || echo 0 > $f']) // see above
    if (delayMs <= 0) return { kind: 'none', close: async () => { deleteNamespace(name) } }
    let netemFailure: string
    try {
      run('ip', ['netns', 'exec', name, 'tc', 'qdisc', 'add', 'dev', 'lo', 'root', 'netem', 'delay', `${delayMs}ms`])
      return { kind: 'netem', close: async () => { deleteNamespace(name) } }
    } catch (err) {
      netemFailure = stderrOf(err)
    }
    const helper = await startNfqueueDelay(name, delayMs, netemFailure)
    return {
      kind: 'nfqueue',
      close: async () => {
        await stopProcess(helper)
        deleteNamespace(name)
      }
    }
  } catch (err) {
    deleteNamespace(name)
    throw err
  }
}

/** Builds the helper when it is missing or older than its source. */
function ensureHelperBuilt (): void {
  if (existsSync(HELPER) && statSync(HELPER).mtimeMs >= statSync(HELPER_SOURCE).mtimeMs) return
  mkdirSync(join(ROOT, '.cache', 'bin'), { recursive: true })
  run('cc', ['-O2', '-Wall', '-o', HELPER, HELPER_SOURCE])
}

/** Starts the helper inside the namespace, waits for "ready", then routes loopback through it. */
async function startNfqueueDelay (name: string, delayMs: number, netemFailure: string): Promise<ChildProcess> {
  const unavailable = (why: string, cause?: unknown): KernelDelayUnavailableError => new KernelDelayUnavailableError('NO_DELAY',
    `Cannot delay loopback by ${delayMs} ms: netem failed (${netemFailure}) and so did NFQUEUE: ${why}`, { cause })
  try {
    ensureHelperBuilt()
  } catch (err) {
    throw unavailable(`building ${HELPER_SOURCE} with cc: ${stderrOf(err)}`, err)
  }
  const helper = spawn('ip', ['netns', 'exec', name, HELPER, QUEUE, String(delayMs)], { stdio: ['ignore', 'pipe', 'pipe'] })
  let stderr = ''
  helper.stderr?.on('data', (d: Buffer) => { stderr += d.toString() })
  try {
    await new Promise<void>((resolve, reject) => {
      helper.stdout?.on('data', (d: Buffer) => { if (d.toString().includes('ready')) resolve() })
      helper.once('error', reject)
      helper.once('exit', code => { reject(new Error(`it exited with code ${code}: ${stderr.trim()}`)) })
    })
  } catch (err) {
    await stopProcess(helper)
    throw unavailable(`the helper did not start: ${(err as Error).message}`, err)
  }
  try {
    run('ip', ['netns', 'exec', name, 'iptables-legacy', '-A', 'OUTPUT', '-o', 'lo', '-j', 'NFQUEUE', '--queue-num', QUEUE])
  } catch (err) {
    await stopProcess(helper)
    throw unavailable(`iptables-legacy: ${stderrOf(err)} (Debian: apt-get install -y iptables)`, err)
  }
  return helper
}

async function stopProcess (child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise<void>(resolve => child.once('exit', () => { resolve() }))
  child.kill('SIGTERM')
  await exited
}

/**
 * Runs the command that `argvFor(kind)` gives inside a fresh namespace with `delayMs` of
 * kernel delay on loopback, stdout and stderr passed through; the namespace is removed
 * afterwards, also when the command fails or this process gets SIGINT/SIGTERM (forwarded to
 * the child). Resolves with the exit code.
 */
export async function runInDelayedNamespace (name: string, delayMs: number, argvFor: (kind: DelayedNamespace['kind']) => readonly string[]): Promise<number> {
  const ns = await createDelayedNamespace(name, delayMs)
  const child = spawn('ip', ['netns', 'exec', name, ...argvFor(ns.kind)], { stdio: 'inherit' })
  const forward = (signal: NodeJS.Signals): void => { child.kill(signal) }
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
    await ns.close()
  }
}

/**
 * Median time of `tries` TCP connects to a listener on 127.0.0.1: one round trip of the
 * loopback link (SYN out, SYN-ACK back), so about 2 × the one-way delay in a delayed namespace.
 */
export async function loopbackConnectMs (tries = 5): Promise<number> {
  const server = createServer(socket => { socket.destroy() })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  const times: number[] = []
  try {
    for (let i = 0; i < tries; i++) {
      const started = performance.now()
      await new Promise<void>((resolve, reject) => {
        const socket = connect(port, '127.0.0.1', () => { socket.destroy(); resolve() })
        socket.once('error', reject)
      })
      times.push(performance.now() - started)
    }
  } finally {
    server.close()
  }
  return median(times)
}
