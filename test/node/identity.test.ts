import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { afterAll, describe, expect, it } from 'vitest'
import { IdentityError, loadOrCreateIdentity } from '../../node/identity.js'

describe('loadOrCreateIdentity', () => {
  const dir = mkdtempSync(join(tmpdir(), 'petal-identity-'))
  afterAll(() => { rmSync(dir, { recursive: true, force: true }) })

  it('creates an Ed25519 key (mode 0600, folders made) and reads the same key back', async () => {
    const file = join(dir, 'nested', 'server.key')
    const key = await loadOrCreateIdentity(file)
    expect(key.type).toBe('Ed25519')
    expect(statSync(file).mode & 0o777).toBe(0o600)
    const again = await loadOrCreateIdentity(file)
    expect(peerIdFromPrivateKey(again).toString()).toBe(peerIdFromPrivateKey(key).toString())
  })

  it('refuses a corrupt file with a clear error and leaves it alone', async () => {
    const file = join(dir, 'corrupt.key')
    writeFileSync(file, 'not a key')
    const err = await loadOrCreateIdentity(file).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(IdentityError)
    expect((err as Error).message).toContain(file)
    expect(statSync(file).size).toBe(9)
  })

  it('refuses an unreadable path', async () => {
    await expect(loadOrCreateIdentity(dir)).rejects.toBeInstanceOf(IdentityError) // a folder: EISDIR
  })
})
