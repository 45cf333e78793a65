// Stages that never connected form a chain: a mesh-only anchor (not --public, so no DHT server in
// the swarm) and three `--layers` daemons that each bootstrap only to the anchor. A client dials
// the first stage only; each stage dials the next by peer id with the addresses it learnt from
// that peer's node record (node/record-addresses.ts), and the tokens equal the engine's.
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import type { Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { tcp } from '@libp2p/tcp'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p, type Libp2p } from 'libp2p'
import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { controlRequest } from '../../node/control.ts'
import { recordMultiaddrs } from '../../node/record-addresses.ts'
import { RECORD_ADDRESSES_MAX } from '../../node/constants.ts'
import { inferenceProtocol, runInference, type ChainHop } from '../../protocols/index.ts'
import type { NodeRecord } from '../../crdt/index.ts'
import { STORIES260K } from '../models.ts'
import { storiesReference } from '../reference.ts'
import { cleanupDaemons, pollUntil, scratch, startDaemon, readyRecord, tcpAddr, type Started } from './daemons.ts'

const SWARM = 'anchor-only'
const STEPS = 48
let prompt: number[]
let expected: number[]
let client: Libp2p

beforeAll(async () => {
  const ref = await storiesReference(STEPS)
  prompt = ref.prompt
  expected = ref.expected
  await ref.whole.close()
  client = await createLibp2p({ addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] }, transports: [tcp()], connectionEncrypters: [noise()], streamMuxers: [yamux()] })
})
afterAll(async () => { await client.stop() })
afterEach(cleanupDaemons)

describe('node records teach the peer store', () => {
  it('parses at most RECORD_ADDRESSES_MAX addresses and skips malformed ones', () => {
    const good = '/ip4/127.0.0.1/tcp/4001'
    expect(recordMultiaddrs([good, 'not an address', 42, '/ip4/999.1.1.1/tcp/1']).map(String)).toEqual([good])
    expect(recordMultiaddrs(new Array(RECORD_ADDRESSES_MAX + 10).fill(good))).toHaveLength(RECORD_ADDRESSES_MAX)
  })

  it('three stages that only know a mesh-only anchor form a chain', async () => {
    const anchor = await startDaemon(scratch('mycelium-anchor-'), ['--swarm', SWARM])
    const ranges: Array<[number, number]> = [[0, 2], [2, 4], [4, 5]]
    const stages: Started[] = []
    for (const [start, end] of ranges) {
      stages.push(await startDaemon(scratch('mycelium-anchor-'), ['--swarm', SWARM, '--model', STORIES260K, '--layers', `${start}:${end}`, '--threads', '1', '--bootstrap', tcpAddr(anchor)], 'serving'))
    }
    const ids = stages.map((d) => readyRecord(d).peerId as string)
    // every stage's replica holds the others' records (through the anchor), addresses included
    for (const d of stages) {
      await pollUntil('the other stages\' records', async () => {
        const view = await controlRequest(join(d.dir, 'control.sock'), { cmd: 'swarm' }) as unknown as { nodes: Record<string, NodeRecord> }
        return ids.every((id) => (view.nodes[id]?.addresses.length ?? 0) > 0 && (view.nodes[id]?.layers.length ?? 0) > 0) ? true : undefined
      }, 30_000)
    }
    await client.dial(multiaddr(tcpAddr(stages[0])))
    const chain: ChainHop[] = ranges.map(([start, end], i) => ({ peer: ids[i], start, end }))
    const open = async (peer: ChainHop['peer'], protocol: string, o: { signal?: AbortSignal }): Promise<Stream> =>
      await client.dialProtocol(typeof peer === 'string' ? peerIdFromString(peer) : peer, protocol, o)
    const out = [...prompt]
    for await (const ev of runInference(open, inferenceProtocol(SWARM), { chain, prompt, maxLength: STEPS, signal: AbortSignal.timeout(30_000) })) {
      if (ev.type === 'token') out.push(ev.id)
    }
    expect(out).toEqual(expected)
  }, 90_000)
})
