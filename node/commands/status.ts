// `mycelium status`: the swarm map of a running node, read from its control socket: layer
// coverage per model (who serves which layers), the nodes (peer, layers, capability,
// reachability, online) and tokens served by each daemon asked. Several --data-dir values ask
// several local daemons (the testnet's), whose own counters then fill the tokens column.
import { join, resolve } from 'node:path'
import type { Command } from 'commander'
import { CONTROL_SOCKET, DEFAULT_DATA_DIR } from '../constants.ts'
import { controlRequest } from '../control.ts'
import { ControlError } from '../errors.ts'
import { renderSwarmMap } from '../swarm-map.ts'
import type { LocalReport, MapInput } from '../swarm-map.ts'

interface StatusFlags { dataDir?: string[], json?: boolean }

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
    local: reports.map((r) => ({ peerId: String(r.peerId), reachability: String(r.reachability), ...(r.inference !== undefined ? { inference: r.inference as LocalReport['inference'] } : {}) }))
  }
}

export function registerStatusCommand (program: Command): void {
  program.command('status')
    .description('print the swarm map of a running node: layer coverage per model, nodes (layers, capability, reachability) and tokens served')
    .option('--data-dir <dir...>', 'data directory of the running daemon to ask; several ask several local daemons, the first draws the map (default: MYCELIUM_DATA_DIR or ~/.mycelium)')
    .option('--json', 'print what the daemons answered as JSON instead of the map')
    .action(async (flags: StatusFlags) => {
      const env = process.env.MYCELIUM_DATA_DIR
      const dirs = (flags.dataDir ?? [env !== undefined && env !== '' ? env : DEFAULT_DATA_DIR]).map((d) => resolve(d))
      const map = await swarmMap(dirs)
      process.stdout.write(flags.json === true ? JSON.stringify(map, null, 2) + '\n' : renderSwarmMap(map))
    })
}
