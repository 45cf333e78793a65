// Restart and persistence: a node reloads its document from the data directory and resyncs only
// the delta (measured in bytes); a damaged store is reported, set aside, never half-loaded, and
// rebuilt from a peer — including the node's own chain, so it does not equivocate afterwards.
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as Y from 'yjs'
import { afterEach, describe, expect, it } from 'vitest'
import { fileEnvelopeStore, keySigner, openSwarmState, crdtConstants, type SwarmState } from '../../crdt/index.ts'
import { seededRandom, testSeed } from '../seed.ts'
import { makeState, seededKey, syncPair, SWARM } from './helpers.ts'

const seed = testSeed()
const dirs: string[] = []
afterEach(() => { for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true }) })

function tempDir (): string {
  const dir = mkdtempSync(join(tmpdir(), 'mycelium-crdt-'))
  dirs.push(dir)
  return dir
}

async function writeMany (s: SwarmState, n: number, tag: string): Promise<void> {
  for (let i = 0; i < n; i++) await s.claimReputation(`${tag}-${i % 13}`, i)
}

describe(`persistence (TEST_SEED=${seed} npx vitest run test/crdt/persistence.test.ts)`, () => {
  it('a restarted node loads from disk and pulls only the delta', async () => {
    const random = seededRandom(seed)
    const dir = tempDir()
    const a = await makeState(random)
    const keyB = await seededKey(random)
    const b = await openSwarmState({ swarm: SWARM, signer: keySigner(keyB), store: fileEnvelopeStore(dir) })
    expect(b.loadReport.status).toBe('empty')
    await writeMany(a, 200, 'x')
    await writeMany(b, 20, 'y')
    const full = syncPair(a, b)
    await b.close()
    const fresh: number[] = []
    a.onEnvelope((e) => fresh.push(e.update.length))
    await writeMany(a, 10, 'z')
    const restarted = await openSwarmState({ swarm: SWARM, signer: keySigner(keyB), store: fileEnvelopeStore(dir) })
    expect(restarted.loadReport).toEqual({ status: 'loaded', envelopes: 220, writers: 2 })
    const missingYjs = Y.encodeStateAsUpdate(a.doc, Y.encodeStateVector(restarted.doc)).length
    const delta = syncPair(a, restarted)
    expect(restarted.snapshot()).toEqual(a.snapshot())
    // Only the 10 new envelopes travel (their updates, byte for byte); nothing loaded from disk.
    expect(delta).toBe(fresh.reduce((n, x) => n + x, 0))
    expect(delta).toBeLessThan(full / 10)
    expect(missingYjs).toBeGreaterThan(0)
    // Its own chain continues where it stopped: a new write is seq 21 and a accepts it.
    const next = await restarted.recordRound('tick', 0)
    expect(next.seq).toBe(21)
    expect(a.receive(next).status).toBe('accepted')
    await restarted.close()
  })

  it('a corrupt store is reported, set aside, not half-loaded, and rebuilt from a peer', async () => {
    const random = seededRandom(seed)
    const dir = tempDir()
    const a = await makeState(random)
    const keyB = await seededKey(random)
    const b = await openSwarmState({ swarm: SWARM, signer: keySigner(keyB), store: fileEnvelopeStore(dir) })
    await writeMany(a, 30, 'x')
    await writeMany(b, 30, 'y')
    syncPair(a, b)
    await b.close()
    const path = join(dir, crdtConstants.STORE_FILE)
    const bytes = readFileSync(path)
    bytes[Math.floor(bytes.length * 0.6)] ^= 0x40
    writeFileSync(path, bytes)

    const reopened = await openSwarmState({ swarm: SWARM, signer: keySigner(keyB), store: fileEnvelopeStore(dir) })
    expect(reopened.loadReport.status).toBe('corrupt')
    const report = reopened.loadReport as { movedTo?: string, reason: string }
    expect(report.reason).toMatch(/checksum|not an envelope|runs past/)
    expect(report.movedTo !== undefined && existsSync(report.movedTo)).toBe(true)
    expect(reopened.writers()).toEqual([]) // nothing half-loaded
    expect(reopened.writesPaused).toBe(true)

    // A write made now waits for the resume (and can be abandoned).
    const controller = new AbortController()
    const abandoned = reopened.recordRound('tick', 0, { signal: controller.signal })
    controller.abort(new Error('gave up'))
    await expect(abandoned).rejects.toThrow('gave up')
    syncPair(a, reopened)
    expect(reopened.snapshot()).toEqual(a.snapshot())
    reopened.resumeWrites()
    const next = await reopened.recordRound('tick', 0)
    expect(next.seq).toBe(31) // continues its own chain, recovered from the peer
    expect(a.receive(next).status).toBe('accepted')
    await reopened.close()
    // The rebuilt log loads cleanly.
    const again = await openSwarmState({ swarm: SWARM, signer: keySigner(keyB), store: fileEnvelopeStore(dir) })
    expect(again.loadReport).toMatchObject({ status: 'loaded', envelopes: 61 })
    expect(again.snapshot()).toEqual(a.snapshot())
  })

  it('fork proofs are kept: an excluded writer stays excluded after a restart', async () => {
    const random = seededRandom(seed)
    const dir = tempDir()
    const forker = await seededKey(random)
    const branch = async (score: number): Promise<SwarmState> => {
      const w = await makeState(() => 0.5, { signer: keySigner(forker) })
      await w.claimReputation('x', score)
      return w
    }
    const [one, two] = [await branch(1), await branch(2)]
    const keyB = await seededKey(random)
    const b = await openSwarmState({ swarm: SWARM, signer: keySigner(keyB), store: fileEnvelopeStore(dir) })
    syncPair(one, b)
    syncPair(two, b) // b holds branch one, meets branch two: proof, exclusion
    const writer = one.peerId
    expect(b.flagged.get(writer)?.excluded).toBe(true)
    await b.close()
    const reopened = await openSwarmState({ swarm: SWARM, signer: keySigner(keyB), store: fileEnvelopeStore(dir) })
    expect(reopened.loadReport.status).toBe('loaded')
    expect(reopened.flagged.get(writer)?.excluded).toBe(true)
    expect(reopened.forkProofsExcept([])).toHaveLength(1)
    expect(reopened.reputationClaims()).toEqual([])
    await reopened.close()
  })

  it('a truncated store is corrupt too', async () => {
    const random = seededRandom(seed)
    const dir = tempDir()
    const keyB = await seededKey(random)
    const b = await openSwarmState({ swarm: SWARM, signer: keySigner(keyB), store: fileEnvelopeStore(dir) })
    await writeMany(b, 5, 'y')
    await b.close()
    const path = join(dir, crdtConstants.STORE_FILE)
    writeFileSync(path, readFileSync(path).subarray(0, -3))
    const reopened = await openSwarmState({ swarm: SWARM, signer: keySigner(keyB), store: fileEnvelopeStore(dir) })
    expect(reopened.loadReport.status).toBe('corrupt')
    expect(reopened.writers()).toEqual([])
  })

  it('a store whose records are intact but whose chain was tampered with is corrupt', async () => {
    const random = seededRandom(seed)
    const dir = tempDir()
    const keyB = await seededKey(random)
    const b = await openSwarmState({ swarm: SWARM, signer: keySigner(keyB), store: fileEnvelopeStore(dir) })
    await writeMany(b, 3, 'y')
    await b.close()
    const other = await makeState(random)
    // Re-write the log with the middle envelope's update swapped for another writer's bytes.
    const { parseLog } = await import('../../crdt/envelope-store.ts')
    const envelopes = parseLog(readFileSync(join(dir, crdtConstants.STORE_FILE)))
    await other.recordRound('tick', 0)
    const store = fileEnvelopeStore(tempDir())
    envelopes[1] = { ...envelopes[1], update: Y.encodeStateAsUpdate(other.doc) }
    store.append(envelopes)
    await store.close()
    const dir2 = dirs[dirs.length - 1]
    const reopened = await openSwarmState({ swarm: SWARM, signer: keySigner(keyB), store: fileEnvelopeStore(dir2) })
    expect(reopened.loadReport.status).toBe('corrupt')
    expect(reopened.writers()).toEqual([])
  })
})
