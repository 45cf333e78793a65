// `mycelium run`: generate text in one process with the engine, printing like llama2.c's `run`.
import { availableParallelism } from 'node:os'
import { Command, InvalidArgumentError, Option } from 'commander'
import { basename } from 'node:path'
import { loadModel } from '../../engine/index.ts'
import type { WeightDType } from '../../engine/index.ts'
import { generate, sessionStepper } from '../../engine/generate.ts'
import { createSampler } from '../../engine/sampler.ts'
import { resolveModel } from '../model-cache.ts'
import { downloadProgress, loadProgress } from '../progress.ts'

const DEFAULT_STEPS = 256

function int (name: string, min: number) {
  return (value: string): number => {
    const n = Number(value)
    if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`${name} must be an integer ≥ ${min}`)
    return n
  }
}

function float (name: string, min: number, max: number) {
  return (value: string): number => {
    const n = Number(value)
    if (!Number.isFinite(n) || n < min || n > max) throw new InvalidArgumentError(`${name} must be a number in [${min}, ${max}]`)
    return n
  }
}

interface RunFlags {
  model: string
  tokenizer?: string
  prompt: string
  maxTokens: number
  temperature: number
  topP: number
  topK: number
  seed?: number
  dtype: WeightDType
  threads: number
  backend: 'wasm' | 'reference'
  json?: boolean
}

export function registerRunCommand (program: Command): void {
  program.command('run')
    .description('Generate text in this process (no network): prints the prompt and its continuation like llama2.c')
    .requiredOption('--model <path|repo>', 'model: llama2.c .bin, Hugging Face directory, or .gguf file; a name in $MYCELIUM_HOME/models (e.g. stories260K); or a Hugging Face repo id org/name[:file], downloaded there once')
    .option('--tokenizer <path>', 'tokenizer file (llama2.c tokenizer.bin; default: found beside the model)')
    .option('--prompt <text>', 'prompt text', '')
    .option('--max-tokens <n>', 'positions to run, prompt included, as llama2.c\'s -n steps (0 = context length)', int('--max-tokens', 0), DEFAULT_STEPS)
    .option('--temperature <t>', 'sampling temperature; 0 is greedy', float('--temperature', 0, 100), 0)
    .option('--top-p <p>', 'nucleus sampling threshold (used when temperature > 0)', float('--top-p', 0, 1), 0.9)
    .option('--top-k <k>', 'keep only the k most likely tokens (0 = off)', int('--top-k', 0), 0)
    .option('--seed <s>', 'sampling seed (default: the clock; printed on stderr)', int('--seed', 0))
    .addOption(new Option('--dtype <dtype>', 'weight format in memory').choices(['f32', 'f16', 'q8_0', 'q4_0']).default('f32'))
    .option('--threads <n>', 'kernel threads', int('--threads', 1), availableParallelism())
    .addOption(new Option('--backend <name>', 'kernels: WebAssembly SIMD or the plain TypeScript reference').choices(['wasm', 'reference']).default('wasm'))
    .option('--json', 'print one JSON object {text, tokens, tokPerS} instead of the text')
    .action(async (flags: RunFlags) => { await run(flags) })
}

async function run (flags: RunFlags): Promise<void> {
  const token = process.env.HF_TOKEN
  const model = await resolveModel(flags.model, { onProgress: downloadProgress(), ...(token !== undefined ? { accessToken: token } : {}) })
  const loadStart = performance.now()
  const { shard, tokenizer } = await loadModel(model.path, {
    ...(flags.tokenizer !== undefined ? { tokenizer: flags.tokenizer } : {}),
    dtype: flags.dtype,
    threads: flags.threads,
    backend: flags.backend,
    onProgress: loadProgress(basename(model.path))
  })
  const loadMs = performance.now() - loadStart
  try {
    const c = shard.config
    const steps = flags.maxTokens === 0 || flags.maxTokens > c.seqLen ? c.seqLen : flags.maxTokens
    const seed = flags.seed ?? Date.now()
    const sampler = createSampler({ temperature: flags.temperature, topP: flags.topP, topK: flags.topK, seed })
    const prompt = tokenizer.encode(flags.prompt, { bos: true })
    const session = shard.openSession({ maxLength: Math.min(c.seqLen, Math.max(steps, prompt.length)) })
    const tokens = [...prompt.slice(0, 1)]
    const textParts: Uint8Array[] = []
    let prefill = { tokens: 0, ms: 0 }
    let decode = { tokens: 0, ms: 0 }
    for await (const ev of generate(sessionStepper(session), { prompt, steps, sampler, bosId: tokenizer.bosId })) {
      if (ev.type === 'token') {
        tokens.push(ev.id)
        const piece = printable(tokenizer, ev.prev, ev.id)
        textParts.push(piece)
        if (flags.json !== true) process.stdout.write(piece)
      } else if (ev.type === 'prefill') {
        prefill = { tokens: ev.tokens, ms: ev.ms }
      } else {
        decode = { tokens: ev.decodeTokens, ms: ev.decodeMs }
      }
    }
    const tokPerS = decode.ms > 0 ? decode.tokens / (decode.ms / 1000) : 0
    if (flags.json === true) {
      const text = Buffer.concat(textParts).toString('utf8')
      process.stdout.write(JSON.stringify({ text, tokens, tokPerS }) + '\n')
    } else {
      process.stdout.write('\n')
    }
    process.stderr.write(`load ${loadMs.toFixed(0)} ms (${flags.dtype}, ${shard.backend.name}, ${shard.backend.threads} threads); ` +
      `prefill ${prefill.tokens} tokens at ${prefill.ms > 0 ? (prefill.tokens / (prefill.ms / 1000)).toFixed(1) : '-'} tok/s; ` +
      `decode ${decode.tokens} tokens at ${tokPerS.toFixed(1)} tok/s` + (flags.temperature > 0 ? `; seed ${seed}` : '') + '\n')
  } finally {
    await shard.close()
  }
}

/** The bytes llama2.c's safe_printf would print for this piece (lone control bytes dropped). */
function printable (tokenizer: Awaited<ReturnType<typeof loadModel>>['tokenizer'], prev: number, id: number): Uint8Array {
  const bytes = tokenizer.decodeTokenBytes(prev, id)
  if (bytes.length === 1) {
    const b = bytes[0]
    const isPrint = b >= 0x20 && b < 0x7f
    const isSpace = b === 0x20 || (b >= 0x09 && b <= 0x0d)
    if (!isPrint && !isSpace) return new Uint8Array(0)
  }
  return bytes
}
