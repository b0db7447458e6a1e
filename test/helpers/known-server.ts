import type { KnownServer } from '../../client/swarm/server-directory.js'
import type { ServerInfo } from '../../protocol/server-info.js'

/** A server of model 'm' (5 blocks) as a discovery reports it: online, 100 tokens/s, RTT 1 ms. */
export function knownServer (peerId: string, start: number, end: number, extra: Partial<ServerInfo> = {}): KnownServer {
  const info: ServerInfo = {
    peerId, addrs: [], modelId: 'm', numBlocks: 5, start, end, state: 'online',
    throughput: { decodeTokensPerSec: 100, prefillTokensPerSec: 100 },
    freeCacheTokens: 1000, openSessions: 0, maxSessions: 4, device: 'cpu', version: 'test',
    blockHashes: Array.from({ length: end - start }, () => '0'.repeat(64)), updatedAt: 0, ...extra
  }
  return { info, rttMs: 1 }
}
