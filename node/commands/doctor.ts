// `mycelium doctor`: how reachable is this node? Asks the running daemon (control socket in the
// data directory); with no daemon running it starts a short-lived node with the same identity,
// data directory and flags, lets it talk to the network for --wait ms, reports, and stops it.
import { existsSync } from 'node:fs'
import type { Command } from 'commander'
import { InvalidArgumentError } from 'commander'
import type { NodeConfig, NodeFlags } from '../config.ts'
import { DOCTOR_OBSERVE_MS, STATUS_INTERVAL_MS } from '../constants.ts'
import { controlRequest } from '../control.ts'
import { loadOrCreateIdentity } from '../identity.ts'
import type { ReachabilityReport } from '../reachability.ts'
import { addNodeFlags, settledConfig } from './start.ts'

interface DoctorFlags extends NodeFlags { json?: boolean, wait: number }

interface SwarmStateSummary { nodes: number, online: number, writers: number, counters: { rejected: number }, flagged: unknown[], store: { status: string } }

interface ModelSummary {
  path: string
  dtype: string
  phase: string
  manifest?: string
  capability?: { decodeLayerMs: number, prefillLayerMsPerToken: number, memoryBytes: number }
  allocation?: { members: number, covered: boolean, self: { start: number, end: number } | null, tokensPerS: number }
}

type Report = ReachabilityReport & { source: string, swarmState?: SwarmStateSummary, model?: ModelSummary }

function modelLines (m: ModelSummary | undefined): string[] {
  if (m === undefined) return []
  const id = m.manifest === undefined ? '(hashing)' : `${m.manifest.slice(0, 12)}…`
  const c = m.capability
  const speed = c === undefined
    ? m.phase
    : `measured ${c.decodeLayerMs.toPrecision(3)} ms/layer decode, ${c.prefillLayerMsPerToken.toPrecision(3)} ms/layer/token prefill, budget ${(c.memoryBytes / 1024 ** 2).toFixed(0)} MiB`
  const a = m.allocation
  const alloc = a === undefined
    ? 'not computed yet'
    : `${a.members} member${a.members === 1 ? '' : 's'}, ${a.covered ? 'covered' : 'NOT covered'}, this node serves ${a.self === null ? 'nothing' : `[${a.self.start}, ${a.self.end})`}, modelled ${a.tokensPerS.toPrecision(3)} tok/s`
  return [`model        ${id} ${m.dtype}, ${speed} (${m.path})`, `allocation   ${alloc}`]
}

async function fromDaemon (config: NodeConfig): Promise<Report | undefined> {
  if (!existsSync(config.controlSocket)) return undefined
  try {
    const status = await controlRequest(config.controlSocket, { cmd: 'status' }, { timeoutMs: 5_000 })
    return { ...(status as unknown as ReachabilityReport), source: `running daemon (${config.controlSocket})` }
  } catch (err) {
    if ((err as Error).name === 'ControlError') return undefined
    throw err
  }
}

async function fromProbe (config: NodeConfig, waitMs: number): Promise<Report> {
  const { generateKeyPair } = await import('@libp2p/crypto/keys')
  const { createHost } = await import('../host.ts')
  const ephemeral = !existsSync(config.identityPath)
  const privateKey = ephemeral ? await generateKeyPair('Ed25519') : (await loadOrCreateIdentity(config.identityPath)).privateKey
  const host = await createHost(config, privateKey, { ephemeralState: true })
  try {
    const deadline = Date.now() + waitMs
    let report = await host.services.reachability.report()
    while (Date.now() < deadline && report.reachability !== 'public') {
      await new Promise((resolve) => setTimeout(resolve, STATUS_INTERVAL_MS))
      report = await host.services.reachability.report()
    }
    const who = ephemeral ? 'a throw-away identity (no identity file yet)' : `identity ${config.identityPath}`
    return { ...report, source: `no daemon running: a short-lived node with ${who} observed the network for ${Math.round(waitMs / 1000)} s` }
  } finally {
    await host.stop()
  }
}

function print (r: Report): string {
  const list = (xs: string[]): string => xs.length === 0 ? '(none)' : xs.join('\n             ')
  const why = r.reachability === 'public'
    ? 'public (a direct address is confirmed)'
    : r.reachability === 'private' ? `private (reachable through ${r.relayReservations.length} relay${r.relayReservations.length === 1 ? '' : 's'})` : 'unknown (no confirmed address and no relay reservation yet)'
  return [
    `peer id      ${r.peerId}`,
    `reachability ${why}`,
    `listen       ${list(r.listen)}`,
    `observed     ${list(r.observed.map((o) => `${o.addr} (seen by ${o.by})`))}`,
    `confirmed    ${list(r.confirmed)}`,
    `relays       ${list(r.relayReservations)}`,
    `upnp         ${r.upnp.length === 0 ? 'no mapping' : list(r.upnp.map((u) => `${u.addr} (${u.verified ? 'confirmed by AutoNAT' : 'not yet confirmed'})`))}`,
    `nat          ${r.nat.text}`,
    ...(r.swarmState === undefined
      ? []
      : [`swarm state  ${r.swarmState.nodes} node records, ${r.swarmState.online} online, ${r.swarmState.counters.rejected} updates rejected, ${r.swarmState.flagged.length} peers flagged (store: ${r.swarmState.store.status})`]),
    ...modelLines(r.model),
    `source       ${r.source}`
  ].join('\n') + '\n'
}

export function registerDoctorCommand (program: Command): void {
  addNodeFlags(program.command('doctor').description('print this node\'s reachability: addresses, relays, UPnP, NAT behaviour'))
    .option('--json', 'print the report as JSON')
    .option('--wait <ms>', 'without a running daemon: how long to observe the network', (v: string) => {
      const n = Number(v)
      if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError('--wait must be a whole number of milliseconds')
      return n
    }, DOCTOR_OBSERVE_MS)
    .action(async (raw: DoctorFlags, command: Command) => {
      const { config, flags } = await settledConfig(command, raw)
      const report = await fromDaemon(config) ?? await fromProbe(config, flags.wait)
      process.stdout.write(flags.json === true ? JSON.stringify(report, null, 2) + '\n' : print(report))
      process.exit(0)
    })
}
