// The node's persistent Ed25519 identity: created once in the data directory (0600), reused on
// every start. A damaged or world-readable key file stops the node with a named error instead of
// silently minting a new peer id (which would orphan its reputation and DHT records).
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { chmod, mkdir, open, readFile, rename, stat } from 'node:fs/promises'
import { dirname } from 'node:path'
import { IdentityCorruptError, IdentityPermissionError } from './errors.ts'

export interface LoadedIdentity {
  privateKey: PrivateKey
  path: string
  created: boolean
}

/** Loads the key at `path`, or creates it (and its folder, 0700) when the file does not exist. */
export async function loadOrCreateIdentity (path: string, options: { create?: () => Promise<PrivateKey> } = {}): Promise<LoadedIdentity> {
  let bytes: Uint8Array | undefined
  try {
    const info = await stat(path)
    if ((info.mode & 0o077) !== 0) {
      throw new IdentityPermissionError(`identity key ${path} is readable by other users (mode ${(info.mode & 0o777).toString(8)}); run: chmod 600 ${path}`)
    }
    bytes = await readFile(path)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
  if (bytes !== undefined) {
    try {
      const privateKey = privateKeyFromProtobuf(bytes)
      if (privateKey.type !== 'Ed25519') throw new Error(`key type ${privateKey.type}, expected Ed25519`)
      return { privateKey, path, created: false }
    } catch (err) {
      throw new IdentityCorruptError(`identity key ${path} is corrupt (${(err as Error).message}); restore it from a backup, or move it away to start as a new peer`, { cause: err })
    }
  }
  const privateKey = await (options.create ?? (async () => await generateKeyPair('Ed25519')))()
  await mkdir(dirname(path), { recursive: true, mode: 0o700 })
  // Write to a temporary file created 0600, then rename: a crash never leaves a half-written key.
  const tmp = `${path}.${process.pid}.tmp`
  const handle = await open(tmp, 'wx', 0o600)
  try {
    await handle.writeFile(privateKeyToProtobuf(privateKey))
    await handle.sync()
  } finally {
    await handle.close()
  }
  await chmod(tmp, 0o600)
  await rename(tmp, path)
  return { privateKey, path, created: true }
}
