// Converts a model between formats, through the engine's own readers (openModel + the tensor
// reader, which dequantises to f32 and undoes HF's q/k permutation) and the format writers.
//   node scripts/convert-model.ts --model PATH [--tokenizer PATH] --to hf|gguf|llama2c --out PATH
//                                 [--dtype f32|f16|bf16|q8_0|q4_0]
// f32 → f32 conversions are value-exact. The vocabulary goes along: a llama2.c tokenizer.bin or a
// GGUF SentencePiece vocabulary becomes tokenizer.json (--to hf, BPE merges derived from the
// scores; encodes like llama2.c), tokenizer.ggml.* (--to gguf) or tok{vocab}.bin (--to llama2c);
// an HF tokenizer.json is copied to --to hf and cannot be turned into a SentencePiece vocabulary.
import { copyFile, mkdir } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Command, Option } from 'commander'
import { writeGgufModel } from '../engine/formats/gguf-writer.ts'
import { writeLlama2c, writeLlama2cTokenizer } from '../engine/formats/llama2c-writer.ts'
import { openModel } from '../engine/formats/open-model.ts'
import { writeHfModel } from '../engine/formats/safetensors-writer.ts'
import type { WritableModel } from '../engine/formats/safetensors-writer.ts'
import { createTensorReader } from '../engine/formats/tensor-reader.ts'
import type { TensorReader } from '../engine/formats/tensor-reader.ts'
import type { ModelSource, SourceDType } from '../engine/index.ts'
import { readGgufVocab, readLlama2cVocab } from '../engine/tokenizer-gguf.ts'
import type { SpmVocab } from '../engine/tokenizer-gguf.ts'
import { tokenizerConfigFromSpm, tokenizerJsonFromSpm } from '../engine/tokenizer-hf.ts'

export interface ConvertOptions {
  model: string
  tokenizer?: string
  to: 'hf' | 'gguf' | 'llama2c'
  out: string
  dtype?: SourceDType
}

/** `source` as a WritableModel: every tensor read as f32 rows in the engine's (adjacent-pair) order. */
export function sourceModel (source: ModelSource, reader: TensorReader): WritableModel {
  return {
    config: source.config,
    rows (name, start, count) {
      const ref = source.tensors.get(name)
      if (ref === undefined) throw new Error(`${source.path}: no tensor ${name}`)
      if (ref.shape.length === 1) return reader.readAll(ref)
      const out = new Float32Array(count * ref.shape[1])
      reader.readRows(ref, start, count, out)
      return out
    }
  }
}

/** The source's SentencePiece vocabulary, when it has one (llama2.c tokenizer.bin or a GGUF). */
async function spmVocab (source: ModelSource): Promise<SpmVocab | undefined> {
  const t = source.tokenizer
  if (t?.kind === 'llama2c') return await readLlama2cVocab(t.path, source.config.vocabSize)
  if (t?.kind === 'gguf') return await readGgufVocab(t.path)
  return undefined
}

export async function convertModel (o: ConvertOptions): Promise<void> {
  const source = await openModel(o.model, o.tokenizer !== undefined ? { tokenizer: o.tokenizer } : {})
  const vocab = await spmVocab(source)
  const dtype = o.dtype ?? 'f32'
  const reader = createTensorReader()
  const model = sourceModel(source, reader)
  try {
    switch (o.to) {
      case 'hf': {
        if (dtype !== 'f32' && dtype !== 'f16' && dtype !== 'bf16') throw new Error(`--to hf stores f32, f16 or bf16, not ${dtype}`)
        await writeHfModel(o.out, model, {
          dtype,
          ...(vocab !== undefined ? { tokenizerJson: tokenizerJsonFromSpm(vocab), tokenizerConfig: tokenizerConfigFromSpm(vocab) } : {})
        })
        if (vocab === undefined && source.tokenizer?.kind === 'hf') {
          await copyFile(source.tokenizer.path, join(o.out, 'tokenizer.json'))
          await copyFile(join(dirname(source.tokenizer.path), 'tokenizer_config.json'), join(o.out, 'tokenizer_config.json')).catch((err: NodeJS.ErrnoException) => {
            if (err.code !== 'ENOENT') throw err
          })
        }
        return
      }
      case 'gguf':
        if (vocab === undefined) throw new Error('--to gguf needs a SentencePiece vocabulary (a llama2.c tokenizer.bin or a GGUF); a Hugging Face tokenizer.json cannot be converted')
        await mkdir(dirname(o.out), { recursive: true })
        await writeGgufModel(o.out, model, vocab, { dtype })
        return
      case 'llama2c':
        if (dtype !== 'f32') throw new Error('--to llama2c stores f32 only')
        await mkdir(dirname(o.out), { recursive: true })
        await writeLlama2c(o.out, model)
        if (vocab !== undefined) await writeLlama2cTokenizer(join(dirname(o.out), `tok${source.config.vocabSize}.bin`), vocab)
    }
  } finally {
    reader.close()
  }
}

async function main (): Promise<void> {
  const program = new Command()
    .description('Convert a model between llama2.c, Hugging Face (safetensors) and GGUF')
    .requiredOption('--model <path>', 'source model: llama2.c file, HF directory or GGUF file')
    .option('--tokenizer <path>', 'tokenizer.bin for a llama2.c source')
    .addOption(new Option('--to <format>', 'target format').choices(['hf', 'gguf', 'llama2c']).makeOptionMandatory())
    .requiredOption('--out <path>', 'output file (gguf, llama2c) or directory (hf)')
    .addOption(new Option('--dtype <dtype>', 'stored dtype').choices(['f32', 'f16', 'bf16', 'q8_0', 'q4_0']).default('f32'))
    .parse()
  const o = program.opts<ConvertOptions>()
  const t0 = performance.now()
  await convertModel(o)
  console.log(`wrote ${o.out} (${o.to}, ${o.dtype ?? 'f32'}) in ${((performance.now() - t0) / 1000).toFixed(1)} s`)
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  main().catch((err: unknown) => {
    console.error((err as Error).message)
    process.exit(1)
  })
}
