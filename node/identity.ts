/**
 * A server's persistent identity: an Ed25519 libp2p private key in a file, so that
 * the peer id (and every provider record pointing at it) survives restarts.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { dirname } from 'node:path'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'

/** The identity file exists but cannot be read or does not hold a private key. */
export class IdentityError extends Error {
  override readonly name = 'IdentityError'
}

/**
 * Reads the private key stored in `file` (libp2p protobuf bytes), or creates an
 * Ed25519 key there (mode 0600, parent folders made) when the file does not exist.
 * Throws IdentityError for an unreadable or corrupt file; it is never overwritten.
 */
export async function loadOrCreateIdentity (file: string): Promise<PrivateKey> {
  let bytes: Uint8Array
  try {
    bytes = await readFile(file)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new IdentityError(`Cannot read identity file ${file}: ${(err as Error).message}`, { cause: err })
    }
    return await createIdentity(file)
  }
  try {
    return privateKeyFromProtobuf(bytes)
  } catch (err) {
    throw new IdentityError(
      `Cannot use identity file ${file}: it does not hold a libp2p private key (${bytes.byteLength} bytes, ${(err as Error).message}); ` +
      'move it away to create a new identity', { cause: err })
  }
}

async function createIdentity (file: string): Promise<PrivateKey> {
  const key = await generateKeyPair('Ed25519')
  try {
    await mkdir(dirname(file), { recursive: true })
    // 'wx': never clobber a key that another process wrote meanwhile
    await writeFile(file, privateKeyToProtobuf(key), { mode: 0o600, flag: 'wx' })
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return await loadOrCreateIdentity(file)
    throw new IdentityError(`Cannot create identity file ${file}: ${(err as Error).message}`, { cause: err })
  }
  return key
}
