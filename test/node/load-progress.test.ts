// Model load progress: the engine's loadShard reports (bytesRead, totalBytes) after each layer and
// once done; `mycelium run` draws a cli-progress bar on a terminal (a real pseudo-terminal via
// script(1)) and prints two plain lines otherwise; a daemon logs `loading` / `loaded` events.
import { spawnSync } from 'node:child_process'
import { describe, expect, it, afterEach } from 'vitest'
import { openLlama2c } from '../../engine/formats/llama2c.ts'
import { loadShard } from '../../engine/shard.ts'
import { STORIES260K, TOK512 } from '../models.ts'
import { cleanupDaemons, runCli, scratch, startDaemon } from './daemons.ts'

const cli = new URL('../../node/cli.ts', import.meta.url).pathname

afterEach(cleanupDaemons)

describe('model load progress', () => {
  it('loadShard reports monotone progress ending at the bytes its range reads', async () => {
    const source = await openLlama2c(STORIES260K)
    const bytesOf = (names: string[]): number => names.reduce((n, name) => n + (source.tensors.get(name)?.byteLength ?? NaN), 0)
    const layerNames = (l: number): string[] => ['attention_norm', 'wq', 'wk', 'wv', 'wo', 'ffn_norm', 'w1', 'w3', 'w2'].map((n) => `layers.${l}.${n}`)
    for (const [start, end] of [[1, 3], [3, 5], [0, 5]]) {
      const calls: Array<[number, number]> = []
      const shard = await loadShard(source, { start, end, onProgress: (b, t) => { calls.push([b, t]) } })
      const names = [...Array.from({ length: end - start }, (_, i) => layerNames(start + i)).flat(), ...(end === 5 ? ['norm', 'tok_embeddings'] : [])]
      const total = bytesOf(names)
      expect(calls).toHaveLength(end - start + 1) // one per layer, one when done
      expect(calls.every(([, t]) => t === total)).toBe(true)
      expect(calls.at(-1)).toEqual([total, total])
      for (let i = 1; i < calls.length; i++) expect(calls[i][0]).toBeGreaterThanOrEqual(calls[i - 1][0])
      expect(calls[0][0]).toBeGreaterThan(0)
      expect(calls[0][0]).toBeLessThan(total)
      expect(shard.bytesRead).toBeGreaterThanOrEqual(total)
      await shard.close()
    }
  })

  it('run: plain lines without a terminal, a bar on one', () => {
    const plain = runCli(['run', '--model', STORIES260K, '--tokenizer', TOK512, '--prompt', 'Once', '--max-tokens', '4', '--temperature', '0', '--threads', '1'])
    expect(plain.status).toBe(0)
    expect(plain.stderr).toMatch(/^loading stories260K\.bin \(\d+(\.\d)? MiB\)\nloaded stories260K\.bin in \d+ ms\n/)
    const command = [process.execPath, cli, 'run', '--model', STORIES260K, '--tokenizer', TOK512, '--prompt', 'Once', '--max-tokens', '4', '--temperature', '0', '--threads', '1'].map((a) => `'${a}'`).join(' ')
    const tty = spawnSync('script', ['-qec', command, '/dev/null'], { encoding: 'utf8', timeout: 30_000 })
    expect(tty.status).toBe(0)
    expect(tty.stdout).toMatch(/loading stories260K\.bin \[[^\]]*\] 100% /) // the bar, drawn to its end
    expect(tty.stdout).not.toMatch(/loaded stories260K\.bin in/)
  }, 60_000)

  it('a daemon logs loading and loaded before serving', async () => {
    const d = await startDaemon(scratch('mycelium-load-'), ['--model', STORIES260K, '--layers', '1:4', '--threads', '1'], 'serving')
    const kinds = d.events.map((e) => e.event)
    const loading = d.events.find((e) => e.event === 'loading')
    expect(loading).toMatchObject({ what: 'layers [1, 4)' })
    expect(loading?.totalBytes).toBeGreaterThan(0)
    expect(d.events.find((e) => e.event === 'loaded')).toMatchObject({ what: 'layers [1, 4)', totalBytes: loading?.totalBytes })
    expect(kinds.indexOf('loading')).toBeLessThan(kinds.indexOf('loaded'))
    expect(kinds.indexOf('loaded')).toBeLessThan(kinds.indexOf('serving'))
  }, 60_000)
})
