/**
 * Wake-up benchmark: what one small message costs a process that has just been idle, against
 * the same message sent back to back. A stage of a loopback swarm waits while the other stages
 * compute, so every message it handles meets it idle; on a machine whose idle cores go cold
 * (a virtual machine's halted vCPUs, deep C-states) that costs CPU and latency that no
 * back-to-back measurement shows.
 *
 * An echo server runs in a child process; this process sends a 350-byte message (a decode
 * run's size) and waits for the echo, then, in the "idle" rows, sleeps `--gap-ms` before the
 * next one. Two transports: raw TCP (node:net, no framing, no encryption: the floor) and
 * Petal's message path (TCP + noise + yamux, msgpack frames on one open stream, as runs and
 * results travel). One JSON line per transport, row and figure: median round trip, and CPU per
 * echo of each side (Linux /proc; user + system, so the kernel's loopback work counts).
 *
 *   npm run bench:wakeup                   # 2 rounds of 1000 echoes per row, gap 4 ms
 *   npm run bench:wakeup -- --gap-ms 8 --echoes 500
 *   npm run bench:wakeup -- --quick        # 300 echoes, 1 round (CI smoke run)
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { createConnection, createServer, type Socket } from 'node:net'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { multiaddr } from '@multiformats/multiaddr'
import { createPetalHost } from '../net/host.js'
import { FramedStream } from '../protocol/framed-stream.js'
import { emit, median } from './lib/bench-output.js'
import { processTreeCpuMs } from './lib/process-cpu.js'

const MESSAGE_BYTES = 350
const ECHO_PROTOCOL = '/petal-bench/echo/1'

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    echoes: { type: 'string' },
    rounds: { type: 'string' },
    'gap-ms': { type: 'string' },
    serve: { type: 'string' } // internal: run as the echo server of this transport
  }
})

/** Sends one message and resolves with the echo's round trip, ms. */
type Echo = () => Promise<number>

if (args.serve === 'tcp') await serveTcp()
else if (args.serve === 'libp2p') await serveLibp2p()
else await bench()

async function bench (): Promise<void> {
  const echoes = Number(args.echoes ?? (args.quick ? 300 : 1000))
  const rounds = Number(args.rounds ?? (args.quick ? 1 : 2))
  const gapMs = Number(args['gap-ms'] ?? 4)
  if (!(Number.isInteger(echoes) && echoes >= 1)) throw new RangeError(`Cannot run --echoes ${args.echoes}: it must be an integer >= 1`)
  if (!(Number.isInteger(rounds) && rounds >= 1)) throw new RangeError(`Cannot run --rounds ${args.rounds}: it must be an integer >= 1`)
  if (!(Number.isFinite(gapMs) && gapMs > 0)) throw new RangeError(`Cannot use --gap-ms ${args['gap-ms']}: it must be a number > 0`)
  for (const transport of ['tcp', 'libp2p'] as const) {
    const server = await startEchoServer(transport)
    const { echo, close } = transport === 'tcp' ? await tcpClient(server.address) : await libp2pClient(server.address)
    try {
      for (let i = 0; i < 50; i++) await echo() // warm-up
      // rows alternate, round after round: this machine's speed drifts within minutes
      const rows = new Map<number, Array<{ rtt: number, own: number, remote: number }>>([[0, []], [gapMs, []]])
      for (let r = 0; r < rounds; r++) {
        for (const [gap, results] of rows) results.push(await measure(echo, echoes, gap, server.child.pid as number))
      }
      for (const [gap, results] of rows) {
        const config = { transport, gapMs: gap, echoes, rounds, messageBytes: MESSAGE_BYTES }
        const row = gap === 0 ? 'back_to_back' : 'after_idle'
        emit({ metric: `echo_rtt_ms_${row}`, value: median(results.map(x => x.rtt)), unit: 'ms', ...config })
        emit({ metric: `echo_cpu_ms_sender_${row}`, value: median(results.map(x => x.own)), unit: 'ms', ...config })
        emit({ metric: `echo_cpu_ms_echoer_${row}`, value: median(results.map(x => x.remote)), unit: 'ms', ...config })
      }
    } finally {
      await close()
      server.child.kill()
    }
  }
}

/** Median round trip, and CPU per echo of this process and of the server's, over `n` echoes. */
async function measure (echo: Echo, n: number, gapMs: number, serverPid: number): Promise<{ rtt: number, own: number, remote: number }> {
  const rtts: number[] = []
  const remoteBefore = processTreeCpuMs(serverPid)
  const ownBefore = process.cpuUsage()
  for (let i = 0; i < n; i++) {
    rtts.push(await echo())
    if (gapMs > 0) await new Promise(resolve => setTimeout(resolve, gapMs))
  }
  const own = process.cpuUsage(ownBefore)
  return { rtt: median(rtts), own: (own.user + own.system) / 1000 / n, remote: (processTreeCpuMs(serverPid) - remoteBefore) / n }
}

/** Starts this script as an echo server in a child process; resolves with the address it prints. */
async function startEchoServer (transport: 'tcp' | 'libp2p'): Promise<{ child: ChildProcess, address: string }> {
  const child = spawn(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), '--serve', transport], { stdio: ['ignore', 'pipe', 'inherit'] })
  const address = await new Promise<string>((resolve, reject) => {
    let out = ''
    child.stdout?.setEncoding('utf8').on('data', (d: string) => {
      out += d
      if (out.includes('\n')) resolve(out.trim())
    })
    child.once('exit', code => { reject(new Error(`The ${transport} echo server exited with code ${code} before printing its address`)) })
  })
  return { child, address }
}

async function serveTcp (): Promise<void> {
  const server = createServer(socket => {
    socket.setNoDelay(true)
    socket.on('data', data => socket.write(data))
  })
  server.listen(0, '127.0.0.1', () => {
    const addr = server.address()
    process.stdout.write(`${typeof addr === 'object' && addr !== null ? addr.port : ''}\n`)
  })
}

/** A Petal host that echoes every frame of an echo stream, as a server answers runs: framed msgpack. */
async function serveLibp2p (): Promise<void> {
  const host = await createPetalHost({ dhtServer: false })
  await host.handle(ECHO_PROTOCOL, stream => {
    const framed = new FramedStream(stream)
    void (async () => {
      for (;;) {
        const frame = await framed.read()
        if (frame.done === true) return
        await framed.write(frame.value)
      }
    })().catch(() => { framed.abort(new Error('echo failed')) })
  })
  process.stdout.write(`${host.getMultiaddrs()[0]?.toString() ?? ''}\n`)
}

async function tcpClient (port: string): Promise<{ echo: Echo, close: () => Promise<void> }> {
  const socket: Socket = createConnection(Number(port), '127.0.0.1')
  socket.setNoDelay(true)
  await new Promise<void>((resolve, reject) => { socket.once('connect', resolve).once('error', reject) })
  const message = new Uint8Array(MESSAGE_BYTES).fill(7)
  return {
    echo: async () => {
      const t = performance.now()
      await new Promise<void>(resolve => {
        let got = 0
        const onData = (d: Buffer): void => {
          got += d.byteLength
          if (got >= MESSAGE_BYTES) { socket.off('data', onData); resolve() }
        }
        socket.on('data', onData)
        socket.write(message)
      })
      return performance.now() - t
    },
    close: async () => { socket.destroy() }
  }
}

async function libp2pClient (address: string): Promise<{ echo: Echo, close: () => Promise<void> }> {
  const host = await createPetalHost({ dhtServer: false })
  const framed = new FramedStream(await host.dialProtocol(multiaddr(address), ECHO_PROTOCOL))
  // a run frame's shape: a few fields and a hidden state's bytes (its size is what travels)
  const message = { type: 'run', runId: 1, start: 0, hidden: new Uint8Array(MESSAGE_BYTES - 40).fill(7) }
  return {
    echo: async () => {
      const t = performance.now()
      await framed.write(message)
      const reply = await framed.read({ signal: AbortSignal.timeout(10_000) })
      if (reply.done === true) throw new Error('The echo server closed the stream')
      return performance.now() - t
    },
    close: async () => { await host.stop() }
  }
}
