import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

/**
 * The `petal-node` entry each server runs; PETAL_NODE_CLI overrides it (the GPU scripts run
 * a bundled CLI on a machine without this repository's node_modules).
 */
const CLI = process.env.PETAL_NODE_CLI ?? fileURLToPath(new URL('../bin/petal-node.js', import.meta.url))

/** A `petal-node serve` child process and the address it printed when ready. */
export interface ServerProcess {
  readonly child: ChildProcess
  readonly address: string
  readonly blocks: string
  /** What it wrote to stderr (logs), for debugging failed tests. */
  readonly stderr: () => string
}

export interface ServerSpec {
  /** "A:B" for --blocks, or a number for --num-blocks. */
  blocks: string | number
  /** Extra CLI flags. */
  args?: string[]
}

/**
 * Starts `petal-node serve` and resolves once it prints its `ready` line with its
 * multiaddr; rejects with its stderr if it exits first or takes longer than `timeoutMs`.
 */
export async function startServer (model: string, spec: ServerSpec, opts: { bootstrap?: string, identityDir: string, index: number, timeoutMs?: number }): Promise<ServerProcess> {
  const args = [CLI, 'serve', '--model', model,
    ...(typeof spec.blocks === 'number' ? ['--num-blocks', String(spec.blocks)] : ['--blocks', spec.blocks]),
    '--listen', '/ip4/127.0.0.1/tcp/0', '--identity', join(opts.identityDir, `server-${opts.index}.key`),
    ...(opts.bootstrap !== undefined ? ['--bootstrap', opts.bootstrap] : []), ...(spec.args ?? [])]
  // a server exits when this process dies, even by SIGKILL (cli/exit-with-parent.ts)
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, PETAL_EXIT_WITH_PARENT: '1' } })
  let out = ''
  let err = ''
  child.stderr?.setEncoding('utf8').on('data', (d: string) => { err = (err + d).slice(-20_000) })
  return await new Promise<ServerProcess>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`server ${opts.index} not ready after ${opts.timeoutMs ?? 60_000} ms:\n${err}`))
    }, opts.timeoutMs ?? 60_000)
    child.stdout?.setEncoding('utf8').on('data', (d: string) => {
      out += d
      const m = /ready\S*\s.*?(\/ip4\/\S+\/p2p\/\w+)/.exec(out)
      if (m?.[1] !== undefined) {
        clearTimeout(timer)
        resolve({ child, address: m[1], blocks: String(spec.blocks), stderr: () => err })
      }
    })
    child.once('exit', code => {
      clearTimeout(timer)
      reject(new Error(`server ${opts.index} exited with code ${code} before it was ready:\n${err}`))
    })
  })
}

/** A swarm of server processes on 127.0.0.1; the first is everyone's bootstrap node. */
export class LocalSwarm {
  readonly servers: ServerProcess[] = []
  readonly identityDir = mkdtempSync(join(tmpdir(), 'petal-swarm-'))
  readonly model: string

  constructor (model: string) {
    this.model = model
  }

  get bootstrap (): string {
    const first = this.servers[0]
    if (first === undefined) throw new Error('The swarm has no server yet')
    return first.address
  }

  /** Starts servers one after another (each joins through the first). */
  async add (...specs: ServerSpec[]): Promise<ServerProcess[]> {
    const started: ServerProcess[] = []
    for (const spec of specs) {
      const server = await startServer(this.model, spec, {
        identityDir: this.identityDir,
        index: this.servers.length,
        ...(this.servers.length > 0 ? { bootstrap: this.bootstrap } : {})
      })
      this.servers.push(server)
      started.push(server)
    }
    return started
  }

  /** SIGTERM (drain) or SIGKILL one server; resolves when it has exited. */
  async stop (server: ServerProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    if (server.child.exitCode !== null || server.child.signalCode !== null) return server.child.exitCode
    const exited = new Promise<number | null>(resolve => server.child.once('exit', code => { resolve(code) }))
    server.child.kill(signal)
    const timer = setTimeout(() => server.child.kill('SIGKILL'), 10_000)
    const code = await exited
    clearTimeout(timer)
    return code
  }

  async close (): Promise<void> {
    await Promise.all(this.servers.map(async s => await this.stop(s)))
    rmSync(this.identityDir, { recursive: true, force: true })
  }
}
