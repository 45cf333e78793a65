// The reachability report: what peers observed over direct connections counts, what they
// "observed" over a relayed connection (the relay's address) does not.
import { generateKeyPairFromSeed } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { describe, expect, it } from 'vitest'
import { ReachabilityMonitor } from '../../node/reachability.ts'
import type { ReachabilityComponents } from '../../node/reachability.ts'

const peer = async (n: number) => peerIdFromPrivateKey(await generateKeyPairFromSeed('Ed25519', new Uint8Array(32).fill(n)))

describe('reachability report', () => {
  it('keeps direct observations, drops relayed ones, and reads reservations and UPnP from the address manager', async () => {
    const [self, relay, other] = [await peer(1), await peer(2), await peer(3)]
    const events = new EventTarget()
    const relayAddr = `/ip4/11.0.0.2/tcp/4001/p2p/${relay.toString()}`
    const components = {
      peerId: self,
      events,
      addressManager: {
        getListenAddrs: () => [],
        getAddresses: () => [multiaddr(`${relayAddr}/p2p-circuit/p2p/${self.toString()}`)],
        getAddressesWithMetadata: () => [
          { multiaddr: multiaddr('/ip4/192.168.1.2/tcp/4001'), verified: true, type: 'transport' },
          { multiaddr: multiaddr('/ip4/11.0.0.11/tcp/4001'), verified: false, type: 'ip-mapping' }
        ]
      },
      connectionManager: { getConnections: () => [{ remotePeer: relay, remoteAddr: multiaddr(relayAddr) }, { remotePeer: other, remoteAddr: multiaddr(`${relayAddr}/p2p-circuit/p2p/${other.toString()}`) }] }
    } as unknown as ReachabilityComponents
    const monitor = new ReachabilityMonitor(components)
    monitor.start()
    events.dispatchEvent(new CustomEvent('peer:identify', { detail: { peerId: relay, observedAddr: multiaddr('/ip4/11.0.0.11/tcp/40000'), connection: { remoteAddr: multiaddr(relayAddr) } } }))
    events.dispatchEvent(new CustomEvent('peer:identify', { detail: { peerId: other, observedAddr: multiaddr('/ip4/11.0.0.2/tcp/4001'), connection: { remoteAddr: multiaddr(`${relayAddr}/p2p-circuit/p2p/${other.toString()}`) } } }))
    const report = await monitor.report()
    expect(report.observed.map((o) => o.by)).toEqual([relay.toString()])
    expect(report.reachability).toBe('private')
    expect(report.relayReservations).toEqual([relayAddr])
    expect(report.upnp).toEqual([{ addr: '/ip4/11.0.0.11/tcp/4001', type: 'ip-mapping', verified: false }])
    expect((await monitor.natInfo()).externalIp).toBe('11.0.0.11')
    monitor.stop()
  })
})
