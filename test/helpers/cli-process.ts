/** `petal-node` child processes for CLI tests: output collected, exit awaited, leftovers killed. */
import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'

export const CLI = fileURLToPath(new URL('../../bin/petal-node.js', import.meta.url))

/** A running `petal-node` command and what it has printed so far. */
export interface CliProcess {
  readonly child: ChildProcess
  stdout: () => string
  stderr: () => string
}

/** The commands a test file started, so that afterAll can kill what is still running. */
export class CliProcesses {
  readonly #children: ChildProcess[] = []

  /** Runs `petal-node ...args` under this process's own Node (22), with `env` added to ours. */
  run (args: readonly string[], env: Record<string, string> = {}): CliProcess {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } })
    this.#children.push(child)
    let out = ''
    let err = ''
    child.stdout?.setEncoding('utf8').on('data', (d: string) => { out += d })
    child.stderr?.setEncoding('utf8').on('data', (d: string) => { err += d })
    return { child, stdout: () => out, stderr: () => err }
  }

  killAll (): void {
    for (const child of this.#children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  }
}

/** Exit code once the process has exited. */
export async function exited (child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null) return child.exitCode
  return await new Promise(resolve => child.once('exit', code => { resolve(code) }))
}

/** Resolves once `stdout` matches `ready` (a `serve` ready line); rejects if the process exits first or after `timeoutMs`. */
export async function untilReady (p: CliProcess, ready: RegExp, timeoutMs: number): Promise<RegExpExecArray> {
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => { reject(new Error(`no ready line after ${timeoutMs / 1000} s:\n${p.stderr()}`)) }, timeoutMs)
    p.child.stdout?.on('data', () => { if (ready.test(p.stdout())) { clearTimeout(timer); resolve() } })
    p.child.once('exit', code => { clearTimeout(timer); reject(new Error(`exited with ${code} before ready:\n${p.stderr()}`)) })
  })
  return ready.exec(p.stdout()) as RegExpExecArray
}
