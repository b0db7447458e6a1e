/**
 * Real processes: `petal-node serve --relay` and a server with no address of its own
 * (`--listen /p2p-circuit`, as behind a NAT), which finds the relay, announces the relayed
 * address, and serves `petal-node generate` through it.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { afterAll, describe, expect, it } from 'vitest'
import { BUNDLED_MODEL, readReference } from '../helpers/fixtures.js'

const CLI = fileURLToPath(new URL('../../bin/petal-node.js', import.meta.url))
const READY = /^ready (\S+) blocks \[(\d+),(\d+)\) of (\S+)$/m
const children: ChildProcess[] = []

/** Runs `petal-node ...args` (Node 22: this process's own binary); `output()` is stdout and stderr so far. */
function run (args: string[]): { child: ChildProcess, stdout: () => string, stderr: () => string } {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, PETAL_EXIT_WITH_PARENT: '1' } })
  children.push(child)
  let out = ''
  let err = ''
  child.stdout?.setEncoding('utf8').on('data', (d: string) => { out += d })
  child.stderr?.setEncoding('utf8').on('data', (d: string) => { err += d })
  return { child, stdout: () => out, stderr: () => err }
}

/** `petal-node serve ...args` once it has printed its ready line: the address in it. */
async function serve (args: string[]): Promise<string> {
  const { child, stdout, stderr } = run(['serve', '--model', BUNDLED_MODEL, ...args])
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => { reject(new Error(`no ready line after 30 s:\n${stderr()}`)) }, 30_000)
    child.stdout?.on('data', () => { if (READY.test(stdout())) { clearTimeout(timer); resolve() } })
    child.once('exit', code => { clearTimeout(timer); reject(new Error(`exited with ${code} before ready:\n${stderr()}`)) })
  })
  return (READY.exec(stdout()) as RegExpExecArray)[1] as string
}

/** Exit code once the process has exited. */
async function exited (child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null) return child.exitCode
  return await new Promise(resolve => child.once('exit', code => { resolve(code) }))
}

describe('petal-node serve behind a relay', () => {
  afterAll(() => {
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  })

  it('a --listen /p2p-circuit server reserves on the --relay server it joins through and serves generate', async () => {
    const relay = await serve(['--blocks', '0:3', '--listen', '/ip4/127.0.0.1/tcp/0', '--relay', '4'])
    const hidden = await serve(['--blocks', '3:5', '--listen', '/p2p-circuit', '--bootstrap', relay])
    expect(hidden).toMatch(new RegExp(`^${relay}/p2p-circuit/p2p/\\w+$`))
    const ref = readReference('stories260k').prompts[0]
    const gen = run(['generate', '--bootstrap', relay, '--model', BUNDLED_MODEL, '--prompt', ref.prompt, '--max-new-tokens', '16', '--temperature', '0', '--json'])
    expect(await exited(gen.child), gen.stderr()).toBe(0)
    const result = JSON.parse(gen.stdout())
    expect(result.tokens).toEqual(ref.greedy_new_ids.slice(0, 16))
    expect(result.stats.target.route).toContain(hidden.slice(-6))
    // status marks the server reachable only through the relay
    const status = run(['status', '--bootstrap', relay])
    expect(await exited(status.child), status.stderr()).toBe(0)
    const line = (id: string): string | undefined => status.stdout().split('\n').find(l => l.includes(`…${id.slice(-8)}`))
    expect(line(hidden)).toMatch(/ \(relay\)\s+\[3,5\)/)
    expect(line(relay)).not.toContain('(relay)')
  }, 60_000)
})
