// The terminal swarm map `mycelium status` prints: per model, a bar of its layers with who serves
// them and how many nodes cover each; then one line per node (peer, layers, capability,
// reachability, online, tokens served). Pure: JSON in (the daemons' `swarm` and `status`
// answers), text out. The reputation column is the asked daemon's ledger (issue 7: derived from the
// replicated round records, identical on every node that holds the same records).

export interface MapRecord {
  capabilities: Record<string, number | string | boolean>
  layers: Array<{ model: string, start: number, end: number }>
  addresses: string[]
  version: string
}

/** What one local daemon reported about itself (control socket `status`). */
export interface LocalReport {
  peerId: string
  reachability: string
  inference?: { opened: number, steps: number, tokens: number, sessions: number }
}

export interface MapInput {
  swarm: string
  self: string
  nodes: Record<string, MapRecord>
  online: string[]
  models: Array<{ id: string, nLayers: number | null, architecture?: string | null }>
  local: LocalReport[]
  /** The first daemon's ledger (status `reputation`): per peer, admitted, excluded and vote weight. */
  reputation?: Record<string, { admitted: boolean, excluded: boolean, weight: number }>
}

function reputationCell (r: { admitted: boolean, excluded: boolean, weight: number } | undefined): string {
  if (r === undefined) return 'not admitted'
  if (r.excluded) return 'EXCLUDED'
  return r.admitted ? `admitted, w ${r.weight.toFixed(2)}` : 'not admitted'
}

/** Most cells a layer bar takes; models with more layers put several layers in a cell. */
const BAR_CELLS = 48
const GiB = 1024 ** 3

const short = (peer: string): string => peer.length > 16 ? `${peer.slice(0, 8)}…${peer.slice(-6)}` : peer
const pad = (s: string, n: number): string => s.length >= n ? s + ' ' : s + ' '.repeat(n - s.length)

function reachability (peer: string, rec: MapRecord | undefined, local: LocalReport | undefined): string {
  if (local !== undefined) return local.reachability
  if (rec === undefined) return 'unknown'
  if (rec.capabilities.public === true) return 'public'
  return rec.addresses.some((a) => a.includes('/p2p-circuit')) ? 'private (relay)' : 'direct'
}

function capability (rec: MapRecord | undefined): string {
  if (rec === undefined) return '(no record yet)'
  const c = rec.capabilities
  const parts = [`${String(c.cores ?? '?')} cores`]
  if (typeof c.memoryBytes === 'number') parts.push(`${(c.memoryBytes / GiB).toFixed(1)} GiB`)
  if (typeof c.dtype === 'string') parts.push(c.dtype)
  if (typeof c.decodeLayerMs === 'number') parts.push(`${c.decodeLayerMs.toPrecision(2)} ms/layer`)
  return parts.join(', ')
}

function layerBar (nLayers: number, served: (layer: number) => number, mark: (count: number) => string): string {
  const cells = Math.min(nLayers, BAR_CELLS)
  let bar = ''
  for (let c = 0; c < cells; c++) {
    const from = Math.floor(c * nLayers / cells)
    const to = Math.floor((c + 1) * nLayers / cells)
    let least = Infinity
    for (let l = from; l < to; l++) least = Math.min(least, served(l))
    bar += mark(least)
  }
  return bar
}

/** The map as text (ends with a newline). */
export function renderSwarmMap (input: MapInput): string {
  const lines: string[] = []
  const online = new Set(input.online)
  const peers = [...new Set([...Object.keys(input.nodes), ...input.online])].sort()
  const locals = new Map(input.local.map((l) => [l.peerId, l]))
  lines.push(`swarm ${input.swarm}: ${online.size} online, ${Object.keys(input.nodes).length} node records (seen from ${short(input.self)})`)

  const modelIds = [...new Set([...input.models.map((m) => m.id), ...peers.flatMap((p) => input.nodes[p]?.layers.map((l) => l.model) ?? [])])].sort()
  if (modelIds.length === 0) lines.push('', 'no model is offered in this swarm yet')
  for (const id of modelIds) {
    const known = input.models.find((m) => m.id === id)
    const servers = peers.flatMap((p) => (input.nodes[p]?.layers ?? []).filter((l) => l.model === id && online.has(p)).map((l) => ({ peer: p, ...l })))
      .sort((a, b) => a.start - b.start || a.end - b.end || (a.peer < b.peer ? -1 : 1))
    const nLayers = known?.nLayers ?? Math.max(0, ...servers.map((s) => s.end))
    const count = (layer: number): number => servers.filter((s) => s.start <= layer && layer < s.end).length
    const missing = Array.from({ length: nLayers }, (_, l) => l).filter((l) => count(l) === 0)
    const state = missing.length === 0 ? 'every layer served' : `NOT covered: layer${missing.length === 1 ? '' : 's'} ${missing.join(', ')}`
    lines.push('', `model ${id.slice(0, 12)}…${known?.architecture != null ? ` ${known.architecture}` : ''}, ${nLayers} layers${known?.nLayers == null ? ' (at least; no manifest yet)' : ''}: ${state}`)
    lines.push(`  ${pad('layers', 18)}0${' '.repeat(Math.max(0, Math.min(nLayers, BAR_CELLS) - 1 - String(nLayers - 1).length))}${nLayers - 1}`)
    for (const s of servers) {
      lines.push(`  ${pad(short(s.peer), 18)}${layerBar(nLayers, (l) => (s.start <= l && l < s.end ? 1 : 0), (n) => (n > 0 ? '█' : '·'))}  [${s.start}, ${s.end})`)
    }
    lines.push(`  ${pad('coverage', 18)}${layerBar(nLayers, count, (n) => (n === 0 ? '✗' : n > 9 ? '+' : String(n)))}  nodes per layer`)
  }

  lines.push('', 'nodes')
  const rows = peers.map((p) => {
    const rec = input.nodes[p]
    const local = locals.get(p)
    const layers = (rec?.layers ?? []).map((l) => `${l.model.slice(0, 6)}[${l.start},${l.end})`).join(' ') || '—'
    const tokens = local?.inference === undefined ? '' : `${local.inference.tokens} tokens, ${local.inference.steps} steps`
    return [short(p), layers, capability(rec), reachability(p, rec, local), online.has(p) ? 'yes' : 'no', reputationCell(input.reputation?.[p]), tokens]
  })
  // the reputation column when a daemon's ledger came with the map; the served column only when
  // some daemon was asked for its counters (nothing publishes them)
  const keep = [true, true, true, true, true, input.reputation !== undefined, input.local.length > 0]
  const header = ['peer', 'layers', 'capability', 'reachability', 'online', 'reputation', 'served'].filter((_, i) => keep[i])
  const kept = rows.map((r) => r.filter((_, i) => keep[i]))
  const widths = header.map((h, i) => Math.max(h.length, ...kept.map((r) => r[i].length)) + 2)
  for (const row of [header, ...kept]) lines.push(`  ${row.map((cell, i) => pad(cell, widths[i])).join('').trimEnd()}`)
  if (input.local.length > 0) {
    lines.push('', `served: tokens a first stage returned and forward steps run, counted by the daemons asked (${input.local.map((l) => short(l.peerId)).join(', ')}); other nodes do not publish their counters`)
  }
  return lines.join('\n') + '\n'
}
