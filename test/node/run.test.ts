// `mycelium run` is a contract other checks rely on: plain output is exactly llama2.c's, --json
// carries every token id, bad input is one clear line and exit code 1.
import { execFile } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'
import { MODELS, STORIES260K, TOK512 } from '../models.ts'

const run = promisify(execFile)
const cli = new URL('../../node/cli.ts', import.meta.url).pathname
const refs = JSON.parse(readFileSync(`${MODELS}/stories260K/reference-greedy.json`, 'utf8')) as Array<{ prompt: string, steps: number, output_text: string, token_ids: number[] }>

async function mycelium (...args: string[]): Promise<{ stdout: string, stderr: string, code: number }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [cli, ...args], { encoding: 'utf8' })
    return { stdout, stderr, code: 0 }
  } catch (err) {
    const e = err as { stdout: string, stderr: string, code: number }
    return { stdout: e.stdout, stderr: e.stderr, code: e.code }
  }
}

describe('mycelium run', () => {
  it.each(refs.slice(0, 4))('prints llama2.c\'s output for "$prompt"', async (ref) => {
    const { stdout, stderr, code } = await mycelium('run', '--model', STORIES260K, '--tokenizer', TOK512, '--prompt', ref.prompt, '--max-tokens', String(ref.steps), '--temperature', '0')
    expect(code).toBe(0)
    expect(stdout).toBe(ref.output_text + '\n')
    expect(stderr).toMatch(/tok\/s/)
  })

  it('--json gives text, every token id and tok/s', async () => {
    const ref = refs[5] // the reference that stops at BOS
    const { stdout, code } = await mycelium('run', '--model', STORIES260K, '--tokenizer', TOK512, '--prompt', ref.prompt, '--max-tokens', String(ref.steps), '--json', '--threads', '2')
    expect(code).toBe(0)
    const out = JSON.parse(stdout) as { text: string, tokens: number[], tokPerS: number }
    expect(out.tokens).toEqual(ref.token_ids)
    expect(out.text).toBe(ref.output_text)
    expect(out.tokPerS).toBeGreaterThan(0)
  })

  it('finds the tokenizer beside the model when not given', async () => {
    const { stdout, code } = await mycelium('run', '--model', STORIES260K, '--prompt', 'Once upon a time', '--max-tokens', '64', '--dtype', 'q8_0')
    expect(code).toBe(0)
    expect(stdout.startsWith('Once upon a time')).toBe(true)
  })

  it('same seed, same sample', async () => {
    const args = ['run', '--model', STORIES260K, '--prompt', 'Lily', '--max-tokens', '40', '--temperature', '0.9', '--seed', '1234']
    const a = await mycelium(...args)
    const b = await mycelium(...args)
    expect(a.code).toBe(0)
    expect(a.stdout).toBe(b.stdout)
  })

  it('a missing model or a bad flag is one clear line', async () => {
    const missing = await mycelium('run', '--model', '/nonexistent/model.bin', '--prompt', 'x')
    expect(missing.code).toBe(1)
    expect(missing.stderr).toMatch(/^mycelium: .*\/nonexistent\/model\.bin/)
    expect(missing.stderr).not.toMatch(/\n\s+at /)
    const bad = await mycelium('run', '--model', STORIES260K, '--max-tokens', 'many')
    expect(bad.code).toBe(1)
    expect(bad.stderr).toMatch(/--max-tokens must be an integer/)
    const dtype = await mycelium('run', '--model', STORIES260K, '--dtype', 'q3_k')
    expect(dtype.code).toBe(1)
    expect(dtype.stderr).toMatch(/Allowed choices are f32, f16, q8_0, q4_0/)
  })
})
