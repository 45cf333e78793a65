// `mycelium generate`: join a swarm as a client through the SDK (client/ `connect`) and stream a
// generation to stdout — the prompt, then the text as tokens arrive; speed and the chain on stderr.
// The tokenizer is the client's: a tokenizer file, or the one beside a local copy of the model
// (a path, a name in $MYCELIUM_HOME/models, or a Hugging Face repo id; default: stories260K when
// the cache has it).
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import type { Command } from 'commander'
import { InvalidArgumentError } from 'commander'
import { mergeSettings } from '../config-sources.ts'
import { ConfigError } from '../errors.ts'
import { DEFAULT_MODEL, myceliumHome, resolveModel } from '../model-cache.ts'
import { downloadProgress } from '../progress.ts'

interface GenerateFlags {
  bootstrap?: string[]
  swarm?: string
  prompt: string
  maxTokens: number
  temperature: number
  topP?: number
  topK?: number
  seed?: number
  model?: string
  tokenizer?: string
  modelPath?: string
  routeWait: number
  json?: boolean
  consensus?: number
}

function num (name: string, min: number, max: number, integer: boolean) {
  return (value: string): number => {
    const n = Number(value)
    if (!Number.isFinite(n) || n < min || n > max || (integer && !Number.isInteger(n))) throw new InvalidArgumentError(`${name} must be ${integer ? 'a whole number' : 'a number'} in [${min}, ${max}]`)
    return n
  }
}

export function registerGenerateCommand (program: Command): void {
  program.command('generate')
    .description('join a swarm as a client (no layers served) and stream a generation to stdout')
    .option('--bootstrap <addr...>', 'multiaddrs of peers to join through, each ending in /p2p/<peer id> (e.g. the relay `mycelium testnet` prints)')
    .option('--swarm <name>', 'swarm to join (default: public)')
    .requiredOption('--prompt <text>', 'prompt text')
    .option('--max-tokens <n>', 'tokens to generate at most', num('--max-tokens', 1, 1_000_000, true), 128)
    .option('--temperature <t>', 'sampling temperature; 0 is greedy', num('--temperature', 0, 2, false), 0)
    .option('--top-p <p>', 'nucleus sampling threshold in (0, 1] (with temperature > 0)', num('--top-p', Number.MIN_VALUE, 1, false))
    .option('--top-k <k>', 'keep only the k most likely tokens (0 = off)', num('--top-k', 0, 1_000_000, true))
    .option('--seed <s>', 'sampling seed: the same seed gives the same text', num('--seed', 0, Number.MAX_SAFE_INTEGER, true))
    .option('--model <id>', 'manifest id of the model to use (default: the only model the swarm offers)')
    .option('--tokenizer <path>', 'the model\'s tokenizer file (tokenizer.bin, tokenizer.json or a .gguf)')
    .option('--model-path <path|repo>', `a local copy of the model, for its tokenizer: a path, a name in $MYCELIUM_HOME/models or a Hugging Face repo id (default: ${DEFAULT_MODEL} when the cache has it)`)
    .option('--route-wait <ms>', 'how long to wait for the swarm state to show a chain covering the model', num('--route-wait', 0, 600_000, true), 15_000)
    .option('--consensus <k>', 'consensus round (issue 7): k answers from chains with distinct nodes, judged pairwise; prints the winner', num('--consensus', 2, 16, true))
    .option('--json', 'print one JSON object (text, tokens, finish reason, usage, chain) instead of streaming')
    .addHelpText('after', '\nMYCELIUM_BOOTSTRAP and MYCELIUM_SWARM apply when the flags are not given.\n')
    .action(async (raw: GenerateFlags, command: Command) => {
      // only these two: generate's --model is a manifest id, not the node's MYCELIUM_MODEL file
      const { flags } = mergeSettings(command, raw, process.env, ['bootstrap', 'swarm'])
      await generate(flags)
    })
}

async function tokenizerSource (flags: GenerateFlags): Promise<{ tokenizer: string } | { model: string }> {
  if (flags.tokenizer !== undefined) return { tokenizer: flags.tokenizer }
  if (flags.modelPath !== undefined) {
    const token = process.env.HF_TOKEN
    return { model: (await resolveModel(flags.modelPath, { onProgress: downloadProgress(), ...(token !== undefined ? { accessToken: token } : {}) })).path }
  }
  const cached = join(myceliumHome(), 'models', DEFAULT_MODEL, `${DEFAULT_MODEL}.bin`)
  if (existsSync(cached)) return { model: cached }
  throw new ConfigError(`generate needs the model's tokenizer: pass --tokenizer FILE or --model-path PATH (no ${DEFAULT_MODEL} in ${join(myceliumHome(), 'models')})`)
}

async function generate (flags: GenerateFlags): Promise<void> {
  if (flags.bootstrap === undefined || flags.bootstrap.length === 0) throw new ConfigError('--bootstrap: give at least one peer to join through (or MYCELIUM_BOOTSTRAP)')
  const tokenizer = await tokenizerSource(flags)
  // loaded here: libp2p is not needed by the CLI's other commands at start-up
  const { connect } = await import('../../client/index.ts')
  const stop = new AbortController()
  const onSignal = (): void => { stop.abort(new Error('interrupted')) }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  const t0 = performance.now()
  const client = await connect({ bootstrap: flags.bootstrap, ...(flags.swarm !== undefined ? { swarm: flags.swarm } : {}), ...tokenizer, routeWaitMs: flags.routeWait, signal: stop.signal })
  let tokens = 0
  let first = 0
  try {
    await stream()
  } catch (err) {
    if (!stop.signal.aborted) throw err
  } finally {
    await client.close()
  }
  process.exit(stop.signal.aborted ? 130 : 0)

  async function stream (): Promise<void> {
    for await (const ev of client.generate({
      prompt: flags.prompt,
      maxTokens: flags.maxTokens,
      temperature: flags.temperature,
      ...(flags.topP !== undefined ? { topP: flags.topP } : {}),
      ...(flags.topK !== undefined ? { topK: flags.topK } : {}),
      ...(flags.seed !== undefined ? { seed: flags.seed } : {}),
      ...(flags.model !== undefined ? { model: flags.model } : {}),
      ...(flags.consensus !== undefined ? { consensus: { k: flags.consensus } } : {}),
      signal: stop.signal
    })) {
      if (ev.type === 'token') {
        if (tokens++ === 0) {
          first = performance.now()
          if (flags.json !== true) process.stdout.write(flags.prompt)
        }
        if (flags.json !== true) process.stdout.write(ev.text)
        continue
      }
      const chain = ev.chain.map((h) => `${String(h.peer).slice(-6)}[${h.start},${h.end})`).join(' → ')
      if (flags.json === true) {
        process.stdout.write(JSON.stringify({ text: ev.text, finishReason: ev.finishReason, model: ev.model, usage: ev.usage, chain: ev.chain.map((h) => ({ peer: String(h.peer), start: h.start, end: h.end })), ...(ev.consensus !== undefined ? { consensus: ev.consensus } : {}) }) + '\n')
      } else {
        process.stdout.write(ev.tail + '\n')
      }
      const decodeS = (performance.now() - first) / 1000
      process.stderr.write(`${tokens} tokens (${ev.finishReason}); first token ${((first - t0) / 1000).toFixed(2)} s after joining started; ${tokens > 1 && decodeS > 0 ? ((tokens - 1) / decodeS).toFixed(1) : '-'} tok/s; chain ${chain}\n`)
    }
  }
}
