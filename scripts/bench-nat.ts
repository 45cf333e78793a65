// `npm run bench:nat`: connectivity matrix in the NAT lab (root only).
//   cells      public↔NAT, cone↔cone, cone↔symmetric, UPnP↔cone
//   transports tcp, ws (everything the host ships; QUIC is not shipped, see node/README.md)
// Per cell an existing node X waits while a fresh node Y (new identity, behind a cone NAT) joins;
// we measure from Y's ready line: the first stream X→Y (through Y's relay reservation), then
// Y→X, whether and when a direct connection forms (dial of an advertised address, reverse dial,
// or our TCP hole punch; DCUtR is off, see node/README.md), and ping RTT (median of 5) over the
// connection that carries traffic at the end. Prints a table, writes bench/results/nat-*.json,
// and ends with one line per target.
import { mkdirSync, writeFileSync } from 'node:fs'
import { createServer, connect } from 'node:net'
import { join } from 'node:path'
import { NetLab, hasMiniupnpd, labUnavailableReason, pollUntil } from './netlab/lab.ts'

const TARGET_MS = 2_000
const DIRECT_WAIT_MS = 10_000
const JOIN_WAIT_MS = 20_000

type Transport = 'tcp' | 'ws'
interface Cell { name: string, x: string, xKind: string }
interface Result {
  cell: string
  transport: Transport
  joinReadyMs: number
  firstStreamJoinerToExistingMs: number | null
  firstStreamExistingToJoinerMs: number | null
  firstVia: string
  direct: boolean
  directMs: number | null
  directVia: string
  rttMs: number | null
  error?: string
}

const CELLS: Cell[] = [
  { name: 'public↔NAT', x: 'pub2', xKind: 'public' },
  { name: 'cone↔cone', x: 'h2', xKind: 'cone' },
  { name: 'cone↔symmetric', x: 'h3', xKind: 'symmetric' },
  ...(hasMiniupnpd() ? [{ name: 'UPnP↔cone', x: 'h4', xKind: 'upnp' }] : [])
]
const PUBLIC_IP: Record<string, string> = { pub: '11.0.0.2', pub2: '11.0.0.3' }

function listenFor (t: Transport, ip = '0.0.0.0'): string {
  return t === 'tcp' ? `/ip4/${ip}/tcp/4001` : `/ip4/${ip}/tcp/4002/ws`
}

async function runTransport (t: Transport): Promise<Result[]> {
  const lab = NetLab.create()
  const results: Result[] = []
  try {
    if (hasMiniupnpd()) await lab.waitForMiniupnpd()
    const pub = await lab.startNode('pub', { public: true, listen: [listenFor(t, PUBLIC_IP.pub)], announce: [listenFor(t, PUBLIC_IP.pub)] })
    const boot = `${listenFor(t, PUBLIC_IP.pub)}/p2p/${pub.peerId}`
    const circuit = (peer: string): string => `${boot}/p2p-circuit/p2p/${peer}`
    const status = async (n: string): Promise<Record<string, unknown>> => await lab.request(n, { cmd: 'status' })
    const connections = async (n: string): Promise<Array<{ peer: string, direct: boolean }>> => (await lab.request(n, { cmd: 'connections' })).connections as Array<{ peer: string, direct: boolean }>
    for (const cell of CELLS) {
      const xPublic = cell.x in PUBLIC_IP
      const x = await lab.startNode(cell.x, xPublic
        ? { public: true, bootstrap: [boot], listen: [listenFor(t, PUBLIC_IP[cell.x])], announce: [listenFor(t, PUBLIC_IP[cell.x])] }
        : { bootstrap: [boot], listen: [listenFor(t)] })
      // X is settled before Y joins: a reservation, and for UPnP a confirmed mapping
      await pollUntil(async () => {
        const s = await status(cell.x)
        if (cell.xKind === 'upnp') return (s.confirmed as string[]).length > 0
        return xPublic || (s.relayReservations as string[]).length > 0
      }, 30_000, `${cell.x} to settle`)
      const xDirect = xPublic ? `${listenFor(t, PUBLIC_IP[cell.x])}/p2p/${x.peerId}` : ((await status(cell.x)).confirmed as string[]).map((a) => `${a}/p2p/${x.peerId}`)[0]
      const y = await lab.startNode('h1', { bootstrap: [boot], listen: [listenFor(t)], dataDir: join(lab.dir, `h1-${cell.x}-${t}`) })
      const ready = performance.now()
      const result: Result = { cell: cell.name, transport: t, joinReadyMs: y.readyMs, firstStreamJoinerToExistingMs: null, firstStreamExistingToJoinerMs: null, firstVia: '', direct: false, directMs: null, directVia: '', rttMs: null }
      try {
        // X → Y first: Y is behind a NAT, so X can only use Y's relay reservation; a reachable X
        // then asks Y to dial it back (reverse dial) and the path turns direct
        await pollUntil(async () => {
          await lab.request(cell.x, { cmd: 'dial', addr: circuit(y.peerId) }, 5_000)
          return (await lab.request(cell.x, { cmd: 'ping', peer: y.peerId }, 5_000)).ok
        }, JOIN_WAIT_MS, 'X→Y stream')
        result.firstStreamExistingToJoinerMs = performance.now() - ready
        // Y → X: over the connection that exists by now, else X's direct address, else its relay address
        const target = xDirect ?? circuit(x.peerId)
        result.firstVia = 'X→Y relay; Y→X ' + (xDirect !== undefined ? 'direct address' : 'relay')
        await pollUntil(async () => {
          if ((await connections('h1')).every((c) => c.peer !== x.peerId)) await lab.request('h1', { cmd: 'dial', addr: target }, 5_000)
          return (await lab.request('h1', { cmd: 'ping', peer: x.peerId }, 5_000)).ok
        }, JOIN_WAIT_MS, 'Y→X stream')
        result.firstStreamJoinerToExistingMs = performance.now() - ready
        // direct: any non-relayed connection between them (the upgraders run on every relayed
        // connection by themselves; DCUtR runs too)
        try {
          await pollUntil(async () => (await connections('h1')).some((c) => c.peer === x.peerId && c.direct), DIRECT_WAIT_MS, 'direct connection')
          result.direct = true
          result.directMs = performance.now() - ready
          const attempts = [...((await status('h1')).direct as Array<{ peer: string, via: string, ok: boolean }>), ...((await status(cell.x)).direct as Array<{ peer: string, via: string, ok: boolean }>)]
          result.directVia = attempts.find((a) => a.ok)?.via ?? 'dial of a direct address'
        } catch {
          result.directVia = 'none (symmetric NAT rewrites ports: relay)'
        }
        const rtts: number[] = []
        for (let i = 0; i < 5; i++) rtts.push(Number((await lab.request('h1', { cmd: 'ping', peer: x.peerId })).rtt))
        result.rttMs = rtts.sort((a, b) => a - b)[2]
      } catch (err) {
        result.error = (err as Error).message
      }
      results.push(result)
      process.stderr.write(`${t} ${cell.name}: ${JSON.stringify(result)}\n`)
      await lab.stopNode('h1')
      await lab.stopNode(cell.x)
    }
  } finally {
    await lab.destroy()
  }
  return results
}

/** Can Node open an outgoing TCP connection from the port it listens on (needed for TCP hole punching)? */
async function probeSimultaneousOpen (): Promise<string> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as { port: number }).port
  const target = createServer()
  await new Promise<void>((resolve) => target.listen(0, '127.0.0.1', resolve))
  const targetPort = (target.address() as { port: number }).port
  const outcome = await new Promise<string>((resolve) => {
    const socket = connect({ host: '127.0.0.1', port: targetPort, localAddress: '127.0.0.1', localPort: port })
    socket.once('connect', () => { socket.destroy(); resolve('connected (port reuse works)') })
    socket.once('error', (err: NodeJS.ErrnoException) => { resolve(`${err.code ?? err.message}`) })
  })
  server.close()
  target.close()
  return `Node ${process.versions.node}: net.connect({ localPort: <listening port> }) → ${outcome}`
}

function fmt (ms: number | null): string {
  return ms === null ? '—' : `${Math.round(ms)}`
}

const reason = labUnavailableReason()
if (reason !== undefined) {
  process.stdout.write(`bench:nat: skipped: ${reason}\n`)
  process.exit(0)
}
const probe = await probeSimultaneousOpen()
const results: Result[] = []
for (const t of ['tcp', 'ws'] as Transport[]) results.push(...await runTransport(t))

const header = ['cell', 'transport', 'join ready ms', 'first stream X→Y ms', 'first stream Y→X ms', 'first via', 'direct', 'direct ms', 'direct via', 'ping rtt ms']
const rows = results.map((r) => [r.cell, r.transport, fmt(r.joinReadyMs), fmt(r.firstStreamExistingToJoinerMs), fmt(r.firstStreamJoinerToExistingMs), r.firstVia, r.error !== undefined ? `error: ${r.error}` : r.direct ? 'yes' : 'no', fmt(r.directMs), r.directVia, fmt(r.rttMs)])
const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)))
const line = (cols: string[]): string => '| ' + cols.map((c, i) => c.padEnd(widths[i])).join(' | ') + ' |'
process.stdout.write([line(header), '|' + widths.map((w) => '-'.repeat(w + 2)).join('|') + '|', ...rows.map(line)].join('\n') + '\n\n')
process.stdout.write(`TCP port reuse probe: ${probe}\n`)

const worst = Math.max(...results.map((r) => Math.max(r.firstStreamJoinerToExistingMs ?? Infinity, r.firstStreamExistingToJoinerMs ?? Infinity)))
const worstFromSpawn = Math.max(...results.map((r) => r.joinReadyMs + Math.max(r.firstStreamJoinerToExistingMs ?? Infinity, r.firstStreamExistingToJoinerMs ?? Infinity)))
const directCells = results.filter((r) => r.direct).length
const out = join('bench', 'results')
mkdirSync(out, { recursive: true })
const file = join(out, `nat-${new Date().toISOString().replace(/[:.]/g, '-')}.json`)
writeFileSync(file, JSON.stringify({ when: new Date().toISOString(), node: process.versions.node, probe, results }, null, 2) + '\n')
process.stdout.write(`results: ${file}\n`)
process.stdout.write(`target: any node can open a stream to any other within 2 s of joining (measured from the joiner's ready line, both directions, all cells): worst ${Math.round(worst)} ms, goal ${TARGET_MS} ms, ${worst <= TARGET_MS ? 'met' : 'not met'} (from process spawn, including Node start-up: worst ${Math.round(worstFromSpawn)} ms, ${worstFromSpawn <= TARGET_MS ? 'met' : 'not met'})\n`)
const possible = results.filter((r) => r.cell !== 'cone↔symmetric').length
process.stdout.write(`target: a direct connection in every cell where NAT behaviour allows one (all but cone↔symmetric): ${directCells}/${possible} ${directCells >= possible ? 'met' : 'not met'} (${results.length} cells in all)\n`)
