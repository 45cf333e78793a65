// The daemon replicates the swarm document: two `mycelium node start` processes on loopback learn
// each other's node records (addresses, version, capabilities), report the replica in `status`,
// and a restarted node loads its document from its data directory instead of starting empty.
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { controlRequest } from '../../node/control.ts'
import { cleanupDaemons, scratch as scratchDir, startDaemon, stopDaemon, pollUntil } from './daemons.ts'

const DEADLINE_MS = 20_000
const scratch = (): string => scratchDir('mycelium-state-')
const start = async (dir: string, extra: string[]): ReturnType<typeof startDaemon> => await startDaemon(dir, extra)
const stop = async (child: Parameters<typeof stopDaemon>[0]): Promise<void> => { await stopDaemon(child) }

type SwarmView = { nodes: Record<string, { addresses: string[], version: string, capabilities: Record<string, unknown> }>, online: string[] }

/** Polls the daemon's `swarm` view until `accept` holds. */
async function waitForView (dir: string, accept: (view: SwarmView) => boolean): Promise<void> {
  await pollUntil('the swarm view to converge', async () => {
    const view = await controlRequest(join(dir, 'control.sock'), { cmd: 'swarm' }) as SwarmView
    return accept(view) ? true : undefined
  }, DEADLINE_MS, 100)
}

afterEach(cleanupDaemons)

describe('daemon swarm state', () => {
  it('replicates node records between daemons and reloads them after a restart', async () => {
    const anchorDir = scratch()
    const memberDir = scratch()
    const anchor = await start(anchorDir, ['--public'])
    const anchorId = String(anchor.ready.peerId)
    const anchorAddr = (anchor.ready.listen as string[]).find((a) => a.includes('/tcp/') && !a.includes('/ws'))!
    const member = await start(memberDir, ['--bootstrap', anchorAddr])
    const memberId = String(member.ready.peerId)

    const both = (view: SwarmView): boolean =>
      view.nodes[anchorId] !== undefined && view.nodes[memberId] !== undefined && view.online.includes(anchorId) && view.online.includes(memberId)
    await waitForView(anchorDir, both)
    await waitForView(memberDir, both)
    const seen = await controlRequest(join(memberDir, 'control.sock'), { cmd: 'swarm' }) as { nodes: Record<string, { addresses: string[], version: string, capabilities: Record<string, unknown> }> }
    expect(seen.nodes[anchorId].version).toBe('0.1.0')
    expect(seen.nodes[anchorId].capabilities.public).toBe(true)
    expect(seen.nodes[anchorId].addresses.some((a) => a.startsWith('/ip4/127.0.0.1/tcp/'))).toBe(true)

    const status = await controlRequest(join(memberDir, 'control.sock'), { cmd: 'status' }) as { swarmState: { nodes: number, counters: { rejected: number } } }
    expect(status.swarmState.nodes).toBe(2)
    expect(status.swarmState.counters.rejected).toBe(0)

    // A restart with the same data directory loads both records from disk.
    await stop(member.child)
    const again = await start(memberDir, ['--bootstrap', anchorAddr])
    expect(again.ready.peerId).toBe(memberId)
    const loaded = again.events.find((e) => e.event === 'state-loaded')
    expect(loaded?.status).toBe('loaded')
    expect(Number(loaded?.writers)).toBe(2)
    await stop(again.child)
    await stop(anchor.child)
  })
})
