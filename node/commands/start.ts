// `mycelium node start`: run the mesh daemon until SIGINT/SIGTERM.
import { Option } from 'commander'
import type { Command } from 'commander'
import { nodeConfig } from '../config.ts'
import type { NodeConfig, NodeFlags } from '../config.ts'
import { describeOrigin, mergeSettings, SETTINGS_HELP } from '../config-sources.ts'
import { resolveModel } from '../model-cache.ts'
import { downloadProgress } from '../progress.ts'

/** Adds the flags `node start` and `doctor` share to a command. */
export function addNodeFlags (command: Command): Command {
  return command
    .option('--listen <addr...>', 'multiaddrs to listen on (default: TCP and WebSockets on every interface)')
    .option('--bootstrap <addr...>', 'multiaddrs of bootstrap peers, each ending in /p2p/<peer id>')
    .option('--announce <addr...>', 'addresses to advertise as reachable without AutoNAT confirmation')
    .option('--swarm <name>', 'swarm to join; swarms never exchange messages (default: public)')
    .option('--data-dir <dir>', 'where the identity and control socket live (default: ~/.mycelium)')
    .option('--identity <path>', 'identity key file (default: <data-dir>/identity.key)')
    .option('--no-mdns', 'do not discover peers on the LAN with mDNS')
    .option('--no-upnp', 'do not ask the router for a UPnP port mapping')
    .option('--dcutr', 'also run libp2p\'s DCUtR (off: it closes relayed connections under live streams, and cannot punch from Node)')
    .option('--config <path>', 'JSON file of settings named like the flags (e.g. {"swarm": "demo", "max-memory": "4G"}); flags and MYCELIUM_* variables override it')
    .addHelpText('after', SETTINGS_HELP)
}

/**
 * Flags, MYCELIUM_* variables and the --config file merged (in that order of precedence), a
 * Hugging Face repo id or cached model name in --model resolved to a file (downloading it with a
 * progress bar when needed), and the result validated into a NodeConfig.
 */
export async function settledConfig<F extends NodeFlags> (command: Command, raw: F & { config?: string }): Promise<{ config: NodeConfig, flags: F }> {
  const { flags, origins } = mergeSettings(command, raw)
  if (flags.model !== undefined) {
    const token = process.env.HF_TOKEN
    flags.model = (await resolveModel(flags.model, { onProgress: downloadProgress(), ...(token !== undefined ? { accessToken: token } : {}) })).path
  }
  try {
    return { config: nodeConfig(flags), flags }
  } catch (err) {
    throw describeOrigin(err, origins)
  }
}

export function registerStartCommand (program: Command): void {
  const node = program.command('node').description('run a Mycelium node')
  addNodeFlags(node.command('start').description('start the node daemon (stops on SIGINT/SIGTERM)'))
    .option('--public', 'this node is reachable: serve relay reservations, AutoNAT dial-backs and the DHT')
    .option('--model <path|repo>', 'offer this model to the swarm: a llama2.c .bin, a Hugging Face directory or a .gguf file, a model in $MYCELIUM_HOME/models (e.g. stories260K), or a Hugging Face repo id org/name[:file] (downloaded there once); the node measures its speed on it and takes its share of the layers')
    .option('--dtype <dtype>', 'how the model\'s layers are held: f32, f16, q8_0 or q4_0 (default: the file\'s own layer dtype when the engine holds it, else f32)')
    .option('--max-memory <bytes>', 'most memory for weights and KV cache, e.g. 512M or 4G (binary units; default: 80% of free memory)')
    .option('--layers <range>', 'layers to serve over the inference protocol: START:END, half-open (e.g. 0:2), or auto (default: the range the swarm\'s allocation gives this node)')
    .option('--threads <n>', 'kernel threads for the model (default: every core)')
    .option('--api-port <port>', 'serve the OpenAI-compatible HTTP API (/v1/models, /v1/completions, /v1/chat/completions, /metrics, /health) on this port; 0 picks a free one (the URL is in the `api` log event and in status)')
    .option('--api-host <host>', 'interface for the HTTP API (default: 127.0.0.1; 0.0.0.0 exposes it)')
    .option('--log-level <level>', 'pino log level (trace, debug, info, warn, error)', 'info')
    // test only (issue 7's integration test): a stage that corrupts its outputs; hidden from help
    .option('--judge-model <path>', 'without --model: hold this model only to judge consensus rounds and calibrate newcomers, serving no layers (e.g. an anchor or relay)')
    .addOption(new Option('--test-corrupt-output <scale>', 'TEST ONLY: add SCALE × RMS noise to the hidden states this stage sends').hideHelp())
    .addOption(new Option('--test-wrong-stage <scale>', 'TEST ONLY: this stage answers everything (calibration challenges too) with SCALE × RMS noise').hideHelp())
    .action(async (raw: NodeFlags & { logLevel: string, config?: string }, command: Command) => {
      const { config, flags } = await settledConfig(command, raw)
      // loaded here, after cli.ts enabled the compile cache: libp2p is most of the start-up time
      const { daemonLogger } = await import('../logger.ts')
      const { startDaemon } = await import('../daemon.ts')
      const log = daemonLogger(flags.logLevel)
      const daemon = await startDaemon(config, log)
      await new Promise<void>((resolve) => {
        void daemon.fatal.then((err) => {
          log.error({ event: 'model-failed', err: err.message }, 'cannot serve the model: stopping')
          process.exitCode = 1
          daemon.stop().then(resolve, resolve)
        })
        let signals = 0
        const onSignal = (signal: NodeJS.Signals): void => {
          signals++
          if (signals > 1) {
            log.warn({ event: 'forced-exit', signal }, 'second signal: exiting without a clean shutdown')
            process.exit(130)
          }
          log.info({ event: 'shutdown', signal }, 'shutting down')
          daemon.stop().then(resolve, (err: unknown) => {
            log.error({ event: 'shutdown-error', err }, 'shutdown failed')
            process.exitCode = 1
            resolve()
          })
        }
        process.on('SIGINT', onSignal)
        process.on('SIGTERM', onSignal)
        // Started by `mycelium testnet` with an IPC channel: if the launcher dies (even by
        // SIGKILL) the channel closes, and this node stops instead of living on as an orphan.
        if (process.channel !== undefined) {
          process.channel.unref()
          process.once('disconnect', () => { onSignal('SIGTERM') })
        }
      })
      // libp2p leaves timers (DHT, mDNS sockets) that may keep the loop alive briefly.
      process.exit(process.exitCode ?? 0)
    })
}
