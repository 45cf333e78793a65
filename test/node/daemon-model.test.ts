// `mycelium node start --model`: the flags are validated with one-line errors; daemons on loopback
// measure the model, publish manifest + capability, derive the same allocation from the replicated
// state and each publish its own part, which together cover every layer; the DHT finds them; and
// SIGTERM while the capability is being measured stops the daemon at once.
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { controlRequest } from '../../node/control.ts'
import { nodeConfig, parseBytes } from '../../node/config.ts'
import { genModel } from '../../scripts/gen-model.ts'
import { STORIES260K } from '../models.ts'
import { cleanupDaemons, runCli as run, scratch as scratchDir, startDaemon as start, stopDaemon, pollUntil } from './daemons.ts'
import type { Started } from './daemons.ts'

const DEADLINE_MS = 30_000
const scratch = (): string => scratchDir('mycelium-model-')

const poll = async <T>(what: string, fn: () => Promise<T | undefined>): Promise<T> => await pollUntil(what, fn, DEADLINE_MS)

afterEach(cleanupDaemons)

interface Assignment { peerId: string, start: number, end: number }
interface AllocationReply { allocation: { model: string, nLayers: number, members: string[], assignments: Assignment[], covered: boolean, self: { start: number, end: number } | null } }
interface SwarmReply { nodes: Record<string, { capabilities: Record<string, unknown>, layers: Array<{ model: string, start: number, end: number }> }>, manifests: number }

describe('node start --model: flags', () => {
  it('parses sizes with binary suffixes', () => {
    expect(parseBytes('--max-memory', '512M')).toBe(512 * 1024 ** 2)
    expect(parseBytes('--max-memory', '4G')).toBe(4 * 1024 ** 3)
    expect(parseBytes('--max-memory', '1.5GiB')).toBe(1.5 * 1024 ** 3)
    expect(parseBytes('--max-memory', '1000')).toBe(1000)
    for (const bad of ['', '0', '-1G', '4Q', 'lots']) expect(() => parseBytes('--max-memory', bad)).toThrow(/--max-memory: not a size/)
    expect(nodeConfig({ model: STORIES260K, maxMemory: '10M', threads: '1', dtype: 'q8_0' }).model).toMatchObject({ maxMemoryBytes: 10 * 1024 ** 2, threads: 1, dtype: 'q8_0' })
    expect(nodeConfig({}).model).toBeUndefined()
  })

  it.each([
    [['--model', STORIES260K, '--max-memory', '4Q'], /--max-memory: not a size: "4Q"/],
    [['--model', '/nonexistent/model.bin'], /--model: no such file or directory: \/nonexistent\/model\.bin/],
    [['--model', STORIES260K, '--dtype', 'q5_k'], /--dtype: "q5_k" is not one of f32, f16, q8_0, q4_0/],
    [['--model', STORIES260K, '--threads', '0'], /--threads: must be a whole number ≥ 1/],
    [['--max-memory', '1G'], /--max-memory needs --model/]
  ])('rejects %j with a clear one-line error', (flags, message) => {
    const r = run(['node', 'start', '--data-dir', scratch(), ...flags])
    expect(r.status).toBe(1)
    expect(r.stderr).toMatch(message)
    expect(r.stderr.trim().split('\n')).toHaveLength(1)
  })

  it('stops on a damaged model file with the engine\'s one-line ModelFormatError, before the ready line', () => {
    const dir = scratch()
    const bad = join(dir, 'broken.bin')
    writeFileSync(bad, 'not a model at all')
    const r = run(['node', 'start', '--data-dir', dir, '--listen', '/ip4/127.0.0.1/tcp/0', '--no-mdns', '--no-upnp', '--model', bad])
    expect(r.status).toBe(1)
    expect(r.stderr).toMatch(/^mycelium: .*broken\.bin: file is \d+ bytes, shorter than a llama2\.c header\n$/)
  })
})

describe('node start --model: measure, publish, allocate', () => {
  it('three daemons publish manifest and capability, agree on the allocation, and cover every layer with their own parts', async () => {
    // 10 MiB each holds 2 of stories260K's 5 layers (next to the 16 384-token KV reserve), so no
    // node holds the model alone and the allocator must split it over all three.
    const model = ['--model', STORIES260K, '--max-memory', '10M', '--threads', '1']
    const anchor = await start(scratch(), ['--public', ...model])
    const anchorAddr = (anchor.ready.listen as string[]).find((a) => a.includes('/tcp/') && !a.includes('/ws'))!
    const others = await Promise.all([start(scratch(), ['--bootstrap', anchorAddr, ...model]), start(scratch(), ['--bootstrap', anchorAddr, ...model])])
    const nodes = [anchor, ...others]
    const ids = nodes.map((n) => String(n.ready.peerId)).sort()
    const sock = (n: Started): string => join(n.dir, 'control.sock')

    // Every node's allocation over all three is covered and matches the layers every node
    // published — checked on all three in the same round, because each one re-plans as the
    // records (RTTs, ranges) arrive and the swarm is only eventually consistent.
    const snapshot = async (n: Started): Promise<{ a: AllocationReply['allocation'], view: SwarmReply } | undefined> => {
      const a = (await controlRequest(sock(n), { cmd: 'allocation' }) as unknown as AllocationReply).allocation
      const view = await controlRequest(sock(n), { cmd: 'swarm' }) as unknown as SwarmReply
      if (a.members.join() !== ids.join() || !a.covered) return undefined
      const published = a.assignments.every((x) => {
        const layers = view.nodes[x.peerId]?.layers ?? []
        return layers.length === 1 && layers[0].model === a.model && layers[0].start === x.start && layers[0].end === x.end
      })
      return published && view.manifests >= 3 ? { a, view } : undefined
    }
    const allocations = await poll('all three nodes to agree on one published allocation', async () => {
      const round = await Promise.all(nodes.map(snapshot))
      if (round.some((r) => r === undefined)) return undefined
      const all = round as Array<{ a: AllocationReply['allocation'], view: SwarmReply }>
      const key = JSON.stringify(all[0].a.assignments)
      return all.every((r) => JSON.stringify(r.a.assignments) === key) ? all : undefined
    })
    const first = allocations[0].a
    for (const { a } of allocations) expect(a.assignments).toEqual(first.assignments)
    expect(first.nLayers).toBe(5)
    // one pipeline over three nodes: contiguous ranges, each layer exactly once
    const sorted = [...first.assignments].sort((x, y) => x.start - y.start)
    expect(sorted.map((x) => x.peerId).sort()).toEqual(ids)
    expect(sorted[0].start).toBe(0)
    for (let i = 1; i < sorted.length; i++) expect(sorted[i].start).toBe(sorted[i - 1].end)
    expect(sorted[sorted.length - 1].end).toBe(5)
    for (const x of sorted) expect(x.end - x.start).toBeLessThanOrEqual(2)

    // measured capability, as every node sees it
    for (const id of ids) {
      const c = allocations[0].view.nodes[id].capabilities
      expect(c.model).toBe(first.model)
      expect(c.dtype).toBe('f32')
      expect(c.decodeLayerMs).toBeGreaterThan(0)
      expect(c.prefillLayerMsPerToken).toBeGreaterThan(0)
      expect(c.memoryBytes).toBe(10 * 1024 ** 2)
    }
    const capability = anchor.events.find((e) => e.event === 'capability')
    expect(capability?.model).toBe(first.model)
    expect(anchor.events.some((e) => e.event === 'allocation')).toBe(true)

    // link figures from the probe service join the records soon after joining (first probe on identify)
    await poll('every node to publish a measured RTT and bandwidth', async () => {
      const view = await controlRequest(sock(anchor), { cmd: 'swarm' }) as unknown as SwarmReply
      return ids.every((id) => {
        const c = view.nodes[id]?.capabilities ?? {}
        return Object.keys(c).some((k) => k.startsWith('rttMs:')) && typeof c.bandwidthBytesPerS === 'number'
      }) ? true : undefined
    })

    // the DHT finds the two members that announced through the anchor (a DHT server)
    const members = ids.filter((id) => id !== String(anchor.ready.peerId))
    await poll('the DHT to list both members as providers', async () => {
      const r = await controlRequest(sock(anchor), { cmd: 'find', hash: first.model, limit: 3 }, { timeoutMs: 5_000 }) as { providers: Array<{ peer: string }> }
      const found = new Set(r.providers.map((p) => p.peer))
      return members.every((m) => found.has(m)) ? true : undefined
    })

    // doctor shows the allocation line
    const doctor = run(['doctor', '--data-dir', anchor.dir])
    expect(doctor.stdout).toMatch(/^model +[0-9a-f]{12}… f32, measured .* ms\/layer decode/m)
    expect(doctor.stdout).toMatch(/^allocation +3 members, covered, this node serves \[\d, \d\)/m)

    expect(await Promise.all(nodes.map(async (n) => await stopDaemon(n.child)))).toEqual([0, 0, 0])
  })

  it('exits promptly on SIGTERM while the capability is being measured', async () => {
    const dir = scratch()
    const path = await genModel({ shape: 'stories110M', layers: 3, format: 'llama2c', dtype: 'f32', out: join(dir, 'model.bin') })
    const node = await start(dir, ['--model', path, '--threads', '1'], 'measuring')
    const signalled = performance.now()
    expect(await stopDaemon(node.child)).toBe(0)
    const ms = performance.now() - signalled
    expect(ms).toBeLessThan(3_000)
    expect(node.events.some((e) => e.event === 'capability')).toBe(false)
    expect(node.events.some((e) => e.event === 'stopped')).toBe(true)
  })
})
