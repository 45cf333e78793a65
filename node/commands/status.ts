// `mycelium status`: the swarm map of a running node, read from its control socket: layer
// coverage per model (who serves which layers), the nodes (peer, layers, capability,
// reachability, online) and tokens served by each daemon asked. Several --data-dir values ask
// several local daemons (the testnet's), whose own counters then fill the served column.
// `--bootstrap` maps the swarm from a read-only observer instead (swarm-observer.ts).
import { join, resolve } from 'node:path'
import type { Command } from 'commander'
import { InvalidArgumentError } from 'commander'
import { DEFAULT_SWARM } from '../../protocols/constants.ts'
import { CONTROL_SOCKET, DEFAULT_DATA_DIR } from '../constants.ts'
import { controlRequest } from '../control.ts'
import { ConfigError, ControlError } from '../errors.ts'
import { renderSwarmMap } from '../swarm-map.ts'
import type { LocalReport, MapInput } from '../swarm-map.ts'

/** How long `status --bootstrap` waits at most for its replica to fill. */
const STATUS_OBSERVE_MS = 10_000

interface StatusFlags { dataDir?: string[], bootstrap?: string[], swarm?: string, wait: number, json?: boolean }

/** Asks the daemons of `dirs` (the first one's replica draws the map). */
export async function swarmMap (dirs: string[]): Promise<MapInput> {
  const ask = async (dir: string, cmd: string): Promise<Record<string, unknown>> => {
    try {
      return await controlRequest(join(dir, CONTROL_SOCKET), { cmd }, { timeoutMs: 10_000 })
    } catch (err) {
      throw new ControlError(`no daemon answers in ${dir} (${(err as Error).message}); start one with \`mycelium node start\` or point --data-dir at its data directory`, { cause: err })
    }
  }
  const view = await ask(dirs[0], 'swarm') as unknown as Omit<MapInput, 'local' | 'swarm'>
  const reports = await Promise.all(dirs.map(async (d) => await ask(d, 'status')))
  return {
    swarm: String(reports[0].swarm),
    self: view.self,
    nodes: view.nodes,
    online: view.online,
    models: view.models ?? [],
    local: reports.map((r) => ({ peerId: String(r.peerId), reachability: String(r.reachability), ...(r.inference !== undefined ? { inference: r.inference as LocalReport['inference'] } : {}) })),
    // the first daemon's reputation ledger (issue 7)
    ...(reports[0].reputation !== undefined ? { reputation: reports[0].reputation as MapInput['reputation'] } : {})
  }
}

export function registerStatusCommand (program: Command): void {
  program.command('status')
    .description('print the swarm map of a running node: layer coverage per model, nodes (layers, capability, reachability) and tokens served')
    .option('--data-dir <dir...>', 'data directory of the running daemon to ask; several ask several local daemons, the first draws the map (default: MYCELIUM_DATA_DIR or ~/.mycelium)')
    .option('--bootstrap <addr...>', 'without a local daemon: join the swarm through these peers as a read-only observer and map what its replica shows (no served counters)')
    .option('--swarm <name>', 'with --bootstrap: the swarm to observe', DEFAULT_SWARM)
    .option('--wait <ms>', 'with --bootstrap: the longest wait for the replica to fill', (v: string) => {
      const n = Number(v)
      if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError('--wait must be a whole number of milliseconds')
      return n
    }, STATUS_OBSERVE_MS)
    .option('--json', 'print what the daemons answered as JSON instead of the map')
    .action(async (flags: StatusFlags) => {
      let map: MapInput
      if (flags.bootstrap !== undefined) {
        if (flags.dataDir !== undefined) throw new ConfigError('--bootstrap and --data-dir: give one (observe through peers, or ask local daemons)')
        const { observeSwarm } = await import('../swarm-observer.ts')
        map = await observeSwarm(flags.bootstrap, flags.swarm ?? DEFAULT_SWARM, flags.wait)
      } else {
        const env = process.env.MYCELIUM_DATA_DIR
        const dirs = (flags.dataDir ?? [env !== undefined && env !== '' ? env : DEFAULT_DATA_DIR]).map((d) => resolve(d))
        map = await swarmMap(dirs)
      }
      process.stdout.write(flags.json === true ? JSON.stringify(map, null, 2) + '\n' : renderSwarmMap(map))
    })
}
