/**
 * Whether a server has an address others can dial. One that listens only through a relay
 * (`--listen /p2p-circuit`, behind a NAT) has none until a relay takes its reservation, and
 * loses it when that relay goes.
 */
import type { Logger } from 'pino'
import type { PetalHost } from '../net/host.js'

/** Resolves once the host has an address to announce; rejects after `timeoutMs` without one. */
export async function waitForAddress (host: PetalHost, timeoutMs: number): Promise<void> {
  if (host.getMultiaddrs().length > 0) return
  await new Promise<void>((resolve, reject) => {
    const done = (err?: Error): void => {
      clearTimeout(timer)
      host.removeEventListener('self:peer:update', check)
      if (err === undefined) resolve()
      else reject(err)
    }
    const check = (): void => { if (host.getMultiaddrs().length > 0) done() }
    const timer = setTimeout(() => {
      done(new Error(`No address to announce after ${timeoutMs} ms: a server listening only through a relay (/p2p-circuit) needs a relay that accepts its reservation (petal-node serve --relay)`))
    }, timeoutMs)
    host.addEventListener('self:peer:update', check)
    check()
  })
}

/** How often watchReachability looks: libp2p raises no event when a relay's reservation goes with its connection. */
const REACHABILITY_CHECK_MS = 2000

/**
 * Logs a warning when the host loses its last address (clients cannot reach it then), and
 * when it has one again; calls `onNewAddresses` whenever it has addresses other than before
 * (a new relay, say), so the server can announce them. Looks every 2 s until the host stops.
 * A server listening on bare `/p2p-circuit` moves to another relay it knows by itself; one
 * that named its relay waits for that relay to come back.
 */
export function watchReachability (host: Pick<PetalHost, 'getMultiaddrs' | 'status' | 'addEventListener'>, log: Logger, onNewAddresses: () => void = () => {}): void {
  let known = addressKey(host)
  const check = (): void => {
    if (host.status !== 'started') return
    const now = addressKey(host)
    if (now === known) return
    const was = known
    known = now
    if (now === '') log.warn('unreachable: no address left (the relay this server listened through is gone); clients cannot reach it until it has one')
    else {
      if (was === '') log.info({ address: now.split(' ')[0] }, 'reachable again')
      onNewAddresses()
    }
  }
  const timer = setInterval(check, REACHABILITY_CHECK_MS)
  timer.unref()
  host.addEventListener('self:peer:update', check)
  host.addEventListener('stop', () => { clearInterval(timer) }, { once: true })
}

/** The host's addresses as one comparable string ('' for none). */
function addressKey (host: Pick<PetalHost, 'getMultiaddrs'>): string {
  return host.getMultiaddrs().map(a => a.toString()).sort().join(' ')
}
