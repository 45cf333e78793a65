// Hugging Face directories: a model written by writeHfModel (q/k permuted for rotate-half RoPE)
// reads back through openHfModel + the tensor reader exactly as it was, in adjacent-pair order;
// config.json is validated and every mismatch names the file and the tensor.
import { readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { openHfModel, parseHfConfig } from '../../../engine/formats/hf.ts'
import { readSafetensorsHeader } from '../../../engine/formats/safetensors.ts'
import { hfConfigJson, writeHfModel, writeSafetensors } from '../../../engine/formats/safetensors-writer.ts'
import type { ModelConfig } from '../../../engine/index.ts'
import { testSeed } from '../../seed.ts'
import { expectFormatError, memoryModel, readAllTensors, tempDir, tinyConfig } from './fixtures.ts'

const seed = testSeed()
const tmp = tempDir('hf')
afterAll(tmp.cleanup)

describe(`Hugging Face model directory (TEST_SEED=${seed})`, () => {
  it('round-trips a llama model exactly, undoing the q/k permutation', async () => {
    const config = tinyConfig()
    const model = memoryModel(config, seed)
    const dir = join(tmp.dir, 'llama')
    await writeHfModel(dir, model)
    const src = await openHfModel(dir)
    expect(src.format).toBe('hf')
    expect(src.config).toEqual(config)
    expect(src.tokenizer).toBeUndefined()
    expect(src.tensors.get('layers.1.wq')).toMatchObject({ permuteHeads: 4, shape: [64, 64] })
    expect(src.tensors.get('layers.1.wk')).toMatchObject({ permuteHeads: 2, shape: [32, 64] })
    expect(src.tensors.get('layers.1.wv')?.permuteHeads).toBeUndefined()
    // The file holds HF's layout (permute(w, n_heads)): inside a head of 16 rows, file row c·8 + j
    // is engine row 2j + c — so file row 1 is engine row 2 and file row 8 is engine row 1.
    const q = (await readSafetensorsHeader(join(dir, 'model.safetensors'))).tensors.get('model.layers.0.self_attn.q_proj.weight')
    const raw = readFileSync(join(dir, 'model.safetensors'))
    const fileRow = (r: number): Float32Array => new Float32Array(raw.buffer.slice(raw.byteOffset + (q?.offset ?? 0) + r * 256, raw.byteOffset + (q?.offset ?? 0) + (r + 1) * 256))
    const engineRow = (r: number): Float32Array => (model.values.get('layers.0.wq') as Float32Array).slice(r * 64, (r + 1) * 64)
    expect(fileRow(1)).toEqual(engineRow(2))
    expect(fileRow(8)).toEqual(engineRow(1))
    expect(fileRow(16 + 9)).toEqual(engineRow(16 + 3))
    const got = readAllTensors(src)
    expect([...got.keys()].sort()).toEqual([...model.values.keys()].sort())
    for (const [name, values] of model.values) expect(got.get(name), name).toEqual(values)
  })

  it('round-trips a tied qwen2 model with q/k/v biases', async () => {
    const config = tinyConfig({ architecture: 'qwen2', qkvBias: true, tiedEmbeddings: true, ropeTheta: 1e6, normEps: 1e-6 })
    const model = memoryModel(config, seed + 1)
    const dir = join(tmp.dir, 'qwen2')
    await writeHfModel(dir, model, { dtype: 'f32' })
    const src = await openHfModel(dir)
    expect(src.config).toEqual(config)
    expect(src.tensors.has('output')).toBe(false)
    expect(src.tensors.get('layers.0.bq')).toMatchObject({ permuteHeads: 4, shape: [64] })
    const got = readAllTensors(src)
    for (const [name, values] of model.values) expect(got.get(name), name).toEqual(values)
  })

  it('finds tokenizer.json and takes bos/eos from config.json', async () => {
    const dir = join(tmp.dir, 'llama')
    writeFileSync(join(dir, 'tokenizer.json'), '{}')
    const src = await openHfModel(dir)
    expect(src.tokenizer).toEqual({ kind: 'hf', path: join(dir, 'tokenizer.json') })
    rmSync(join(dir, 'tokenizer.json'))
  })

  describe('config.json validation', () => {
    const base = hfConfigJson(tinyConfig(), 'f32')
    const parse = (over: Record<string, unknown>): unknown => parseHfConfig('cfg.json', JSON.stringify({ ...base, ...over }))
    it.each([
      [{ model_type: 'gpt2' }, /model_type "gpt2" is not supported/],
      [{ hidden_size: undefined }, /missing hidden_size/],
      [{ num_attention_heads: 5 }, /hidden_size 64 is not a multiple of num_attention_heads 5/],
      [{ num_key_value_heads: 3 }, /not a multiple of num_key_value_heads 3/],
      [{ head_dim: 32 }, /head_dim 32 differs from hidden_size \/ num_attention_heads = 16/],
      [{ hidden_act: 'gelu' }, /hidden_act "gelu"/],
      [{ rope_scaling: { rope_type: 'yarn', factor: 4 } }, /rope_scaling "yarn" is not supported/],
      [{ rope_scaling: { rope_type: 'llama3', factor: 32 } }, /rope_scaling.low_freq_factor undefined is not a positive number/],
      [{ vocab_size: -3 }, /vocab_size -3 is not a positive integer/],
      [{ bos_token_id: 'x' }, /bos_token_id "x" is not a token id/]
    ])('rejects %j', (over, message) => {
      expect(() => parse(over)).toThrow(message)
      expect(() => parse(over)).toThrow(/cfg\.json/)
    })
    it('accepts defaults and lists of eos ids', () => {
      expect(parse({ num_key_value_heads: undefined, rope_theta: undefined, head_dim: null, eos_token_id: [7, 8] })).toMatchObject({ nKvHeads: 4, ropeTheta: 10000, eosId: 7 })
      expect(parse({ model_type: 'mistral', sliding_window: 64 })).toMatchObject({ architecture: 'mistral', seqLen: 64 })
    })
    it('reads Llama 3 RoPE scaling and writes it back', () => {
      const rope_scaling = { rope_type: 'llama3', factor: 32, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 }
      const config = parse({ rope_scaling }) as ModelConfig
      expect(config.ropeScaling).toEqual({ type: 'llama3', factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 8192 })
      expect(hfConfigJson(config, 'f32')).toMatchObject({ rope_scaling })
    })
  })

  describe('damage', () => {
    const config = tinyConfig()
    const dir = join(tmp.dir, 'damaged')
    const st = join(dir, 'model.safetensors')
    const cfg = join(dir, 'config.json')
    const fresh = async (): Promise<void> => { await writeHfModel(dir, memoryModel(config, seed)) }

    it('a tensor whose shape disagrees with config.json', async () => {
      await fresh()
      writeFileSync(cfg, JSON.stringify({ ...hfConfigJson(config, 'f32'), intermediate_size: 128 }))
      await expectFormatError(openHfModel(dir), st, /tensor model.layers.0.mlp.gate_proj.weight has shape \[96, 64\], config needs \[128, 64\]/)
    })

    it('a missing tensor', async () => {
      await fresh()
      const m = memoryModel(config, seed)
      await writeSafetensors(st, [{ name: 'model.embed_tokens.weight', shape: [400, 64], dtype: 'f32', rows: (s, n) => m.rows('tok_embeddings', s, n) }])
      await expectFormatError(openHfModel(dir), st, /missing tensor model.norm.weight/)
    })

    it('bad JSON in config.json, and no config.json', async () => {
      await fresh()
      writeFileSync(cfg, '{"model_type": "llama",')
      await expectFormatError(openHfModel(dir), cfg, /not valid JSON/)
      rmSync(cfg)
      await expectFormatError(openHfModel(dir), cfg, /needs config.json/)
    })

    it('a corrupt safetensors file', async () => {
      await fresh()
      writeFileSync(st, Buffer.from('not a safetensors file at all'))
      await expectFormatError(openHfModel(dir), st, /header length/)
    })
  })
})
