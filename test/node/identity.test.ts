// The node identity: created once (0600 in a 0700 folder), reused on restart, and a damaged or
// world-readable key is a named error, never a silently new peer id.
import { generateKeyPairFromSeed } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { loadOrCreateIdentity } from '../../node/identity.ts'
import { seededRandom, testSeed } from '../seed.ts'

const seed = testSeed()
const dirs: string[] = []
function scratch (): string {
  const d = mkdtempSync(join(tmpdir(), 'mycelium-identity-'))
  dirs.push(d)
  return d
}
const seededKey = async () => {
  const rand = seededRandom(seed)
  return await generateKeyPairFromSeed('Ed25519', Uint8Array.from({ length: 32 }, () => Math.floor(rand() * 256)))
}

afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true })
})

describe(`node identity (TEST_SEED=${seed})`, () => {
  it('is created 0600 inside a new 0700 data directory, then reused with the same peer id', async () => {
    const path = join(scratch(), 'data', 'identity.key')
    const first = await loadOrCreateIdentity(path, { create: seededKey })
    expect(first.created).toBe(true)
    expect(statSync(path).mode & 0o777).toBe(0o600)
    expect(statSync(join(path, '..')).mode & 0o777).toBe(0o700)
    const second = await loadOrCreateIdentity(path)
    expect(second.created).toBe(false)
    expect(peerIdFromPrivateKey(second.privateKey).toString()).toBe(peerIdFromPrivateKey(first.privateKey).toString())
  })

  it('refuses a corrupt key file with a named error and leaves the file alone', async () => {
    const path = join(scratch(), 'identity.key')
    await loadOrCreateIdentity(path, { create: seededKey })
    const bytes = readFileSync(path)
    const damaged = Uint8Array.from(bytes.subarray(0, 10))
    writeFileSync(path, damaged, { mode: 0o600 })
    await expect(loadOrCreateIdentity(path)).rejects.toMatchObject({ name: 'IdentityCorruptError' })
    await expect(loadOrCreateIdentity(path)).rejects.toThrow(/corrupt/)
    expect(readFileSync(path)).toEqual(Buffer.from(damaged))
    writeFileSync(path, 'not a key at all\n', { mode: 0o600 })
    await expect(loadOrCreateIdentity(path)).rejects.toMatchObject({ name: 'IdentityCorruptError' })
  })

  it('refuses a key file other users can read', async () => {
    const path = join(scratch(), 'identity.key')
    await loadOrCreateIdentity(path, { create: seededKey })
    chmodSync(path, 0o644)
    await expect(loadOrCreateIdentity(path)).rejects.toMatchObject({ name: 'IdentityPermissionError' })
    await expect(loadOrCreateIdentity(path)).rejects.toThrow(/chmod 600/)
  })
})
