// mDNS on the LAN: nodes of one swarm find each other; the service tag carries the swarm, so a node
// of another swarm on the same LAN is not announced to them. Skipped where there is no
// multicast-capable interface besides loopback.
import { generateKeyPairFromSeed } from '@libp2p/crypto/keys'
import { networkInterfaces } from 'node:os'
import { afterAll, describe, expect, it } from 'vitest'
import { nodeConfig } from '../../node/config.ts'
import { createHost } from '../../node/host.ts'
import type { MyceliumHost } from '../../node/host.ts'

const lan = Object.values(networkInterfaces()).flat().some((i) => i?.family === 'IPv4' && !i.internal)
const hosts: MyceliumHost[] = []

async function host (swarm: string, seed: number): Promise<MyceliumHost> {
  const key = await generateKeyPairFromSeed('Ed25519', new Uint8Array(32).fill(seed))
  const h = await createHost(nodeConfig({ listen: ['/ip4/0.0.0.0/tcp/0'], swarm, dataDir: '/nonexistent', upnp: false }), key, { directUpgrade: false })
  hosts.push(h)
  return h
}

afterAll(async () => {
  await Promise.all(hosts.map(async (h) => { await h.stop() }))
})

describe.skipIf(!lan)('mDNS discovery', () => {
  it('finds a node of the same swarm and not one of another swarm', async () => {
    const a = await host('lan-a', 21)
    const seen = new Set<string>()
    a.addEventListener('peer:discovery', (evt) => { seen.add(evt.detail.id.toString()) })
    const [b, c] = [await host('lan-a', 22), await host('lan-b', 23)]
    const deadline = Date.now() + 15_000
    while (!seen.has(b.peerId.toString()) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50))
    expect(seen.has(b.peerId.toString())).toBe(true)
    expect(seen.has(c.peerId.toString())).toBe(false)
  })
})
