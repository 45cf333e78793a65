// The OpenAI-compatible HTTP API of a real daemon (`node start --api-port 0`) in a swarm of three
// daemons that split stories260K: the official `openai` npm client (completions and chat, with
// and without streaming, models), the Prometheus metrics and health, and bad input with plain
// fetch — every refusal an OpenAI error object, the daemon still serving after all of it.
import OpenAI from 'openai'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { connect } from '../../client/index.ts'
import { controlRequest } from '../../node/control.ts'
import { startApi } from '../../node/api/server.ts'
import { TOK512 } from '../models.ts'
import { addrOf, reference, startSwarm } from '../client/swarm.ts'
import type { TestSwarm } from '../client/swarm.ts'
import { cleanupDaemons, pollUntil, runCli, scratch } from './daemons.ts'
import { seededRandom, testSeed } from '../seed.ts'

const SWARM = 'api'
let swarm: TestSwarm
let url: string
let openai: OpenAI
let ref: Awaited<ReturnType<typeof reference>>

beforeAll(async () => {
  ref = await reference('Once upon a time', 64)
  swarm = await startSwarm(SWARM, 3, ['--api-port', '0'])
  const event = await pollUntil('the api event', async () => swarm.daemons[0].events.find((e) => e.event === 'api'), 10_000)
  url = event.url as string
  openai = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'unused', maxRetries: 0 })
}, 60_000)
afterAll(cleanupDaemons)

async function post (path: string, body: string, headers: Record<string, string> = { 'content-type': 'application/json' }): Promise<{ status: number, json: { error: { message: string, type: string, param: string | null, code: string | null } } }> {
  const res = await fetch(`${url}${path}`, { method: 'POST', headers, body })
  return { status: res.status, json: await res.json() as never }
}

describe('OpenAI-compatible API on a daemon', () => {
  it('models: the manifest id and the model file name; status and the api log event show the URL', async () => {
    const models = await openai.models.list()
    const ids = models.data.map((m) => m.id)
    expect(ids).toEqual(['stories260K', swarm.manifest])
    expect(models.data[0].object).toBe('model')
    expect((await openai.models.retrieve('stories260K')).id).toBe('stories260K')
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/)
    const status = await controlRequest(join(swarm.daemons[0].dir, 'control.sock'), { cmd: 'status' })
    expect(status.api).toBe(url)
  })

  it('completions: greedy text equals the single-process engine, usage and finish_reason', async () => {
    const r = await openai.completions.create({ model: 'stories260K', prompt: 'Once upon a time', max_tokens: 20, temperature: 0 })
    expect(r.object).toBe('text_completion')
    expect(r.id).toMatch(/^cmpl-/)
    expect(r.model).toBe('stories260K')
    expect(r.choices[0].text).toBe(textOf(20))
    expect(r.choices[0].finish_reason).toBe('length')
    expect(r.usage).toEqual({ prompt_tokens: ref.prompt.length, completion_tokens: 20, total_tokens: ref.prompt.length + 20 })
    // token ids as the prompt (BOS first, as the SDK tokenizes)
    const ids = await openai.completions.create({ model: 'stories260K', prompt: ref.prompt, max_tokens: 5, temperature: 0 })
    expect(ids.choices[0].text).toBe(textOf(5))
    expect((await post('/v1/completions', JSON.stringify({ model: 'stories260K', prompt: [1, 99_999] }))).json.error.param).toBe('prompt')
    // by manifest id too
    const byId = await openai.completions.create({ model: swarm.manifest, prompt: 'Once upon a time', max_tokens: 5, temperature: 0 })
    expect(byId.choices[0].text).toBe(textOf(5))
  }, 30_000)

  it('completions, streaming: SSE chunks concatenate to the same text, then finish_reason and usage', async () => {
    const stream = await openai.completions.create({ model: 'stories260K', prompt: 'Once upon a time', max_tokens: 20, temperature: 0, stream: true, stream_options: { include_usage: true } })
    let text = ''
    let finish: string | null = null
    let usage: unknown
    let chunks = 0
    for await (const chunk of stream) {
      chunks++
      if (chunk.choices.length > 0) { text += chunk.choices[0].text; finish = chunk.choices[0].finish_reason ?? finish }
      if (chunk.usage != null) usage = chunk.usage
    }
    expect(chunks).toBeGreaterThan(5)
    expect(text).toBe(textOf(20))
    expect(finish).toBe('length')
    expect(usage).toEqual({ prompt_tokens: ref.prompt.length, completion_tokens: 20, total_tokens: ref.prompt.length + 20 })
  }, 30_000)

  it('chat completions, with and without streaming', async () => {
    const r = await openai.chat.completions.create({ model: 'stories260K', messages: [{ role: 'user', content: 'Once upon a time' }], max_tokens: 12, temperature: 0 })
    expect(r.object).toBe('chat.completion')
    expect(r.id).toMatch(/^chatcmpl-/)
    expect(r.choices[0].message).toMatchObject({ role: 'assistant', content: textOf(12) })
    expect(r.choices[0].finish_reason).toBe('length')
    const stream = await openai.chat.completions.create({ model: 'stories260K', messages: [{ role: 'user', content: 'Once upon a time' }], max_tokens: 12, temperature: 0, stream: true })
    let text = ''
    let role: string | undefined
    let finish: string | null = null
    for await (const chunk of stream) {
      expect(chunk.object).toBe('chat.completion.chunk')
      role ??= chunk.choices[0]?.delta.role
      text += chunk.choices[0]?.delta.content ?? ''
      finish = chunk.choices[0]?.finish_reason ?? finish
    }
    expect(role).toBe('assistant')
    expect(text).toBe(textOf(12))
    expect(finish).toBe('length')
  }, 30_000)

  it('a stop string ends the completion before it (finish_reason stop); seeded sampling repeats', async () => {
    const word = ref.text.trim().split(' ')[3]
    const r = await openai.completions.create({ model: 'stories260K', prompt: 'Once upon a time', max_tokens: 40, temperature: 0, stop: [` ${word}`] })
    expect(r.choices[0].finish_reason).toBe('stop')
    expect(r.choices[0].text).toBe(ref.text.slice(0, ref.text.indexOf(` ${word}`)))
    const a = await openai.completions.create({ model: 'stories260K', prompt: 'Once upon a time', max_tokens: 15, temperature: 0.8, seed: 7 })
    const b = await openai.completions.create({ model: 'stories260K', prompt: 'Once upon a time', max_tokens: 15, temperature: 0.8, seed: 7 })
    expect(a.choices[0].text).toBe(b.choices[0].text)
  }, 30_000)

  it('bad input gets OpenAI error objects, never a crash', async () => {
    const cases: Array<[string, string, number, string | null, Record<string, string>?]> = [
      ['/v1/completions', '{"model": "stories260K", "prompt": ', 400, 'invalid_json'],
      ['/v1/completions', 'not json at all', 400, 'invalid_json'],
      ['/v1/completions', '[1, 2]', 400, null],
      ['/v1/completions', '{"prompt": "x"}', 400, 'missing_required_parameter'],
      ['/v1/completions', '{"model": "stories260K"}', 400, 'missing_required_parameter'],
      ['/v1/completions', '{"model": 5, "prompt": "x"}', 400, 'invalid_type'],
      ['/v1/completions', '{"model": "stories260K", "prompt": 5}', 400, 'invalid_type'],
      ['/v1/completions', '{"model": "no-such-model", "prompt": "x"}', 404, 'model_not_found'],
      ['/v1/completions', '{"model": "stories260K", "prompt": "x", "max_tokens": 1e12}', 400, 'invalid_value'],
      ['/v1/completions', '{"model": "stories260K", "prompt": "x", "max_tokens": 100000}', 400, 'context_length_exceeded'],
      ['/v1/completions', '{"model": "stories260K", "prompt": "x", "max_tokens": "ten"}', 400, 'invalid_type'],
      ['/v1/completions', '{"model": "stories260K", "prompt": "x", "max_tokens": -1}', 400, 'invalid_value'],
      ['/v1/completions', '{"model": "stories260K", "prompt": "x", "temperature": 9}', 400, 'invalid_value'],
      ['/v1/completions', '{"model": "stories260K", "prompt": "x", "stream": "yes"}', 400, 'invalid_type'],
      ['/v1/completions', '{"model": "stories260K", "prompt": "x", "n": 3}', 400, 'invalid_value'],
      ['/v1/completions', JSON.stringify({ model: 'stories260K', prompt: 'Once upon a time '.repeat(200) }), 400, 'context_length_exceeded'],
      ['/v1/completions', JSON.stringify({ model: 'stories260K', prompt: 'x'.repeat(300_000) }), 400, 'context_length_exceeded'],
      ['/v1/completions', JSON.stringify({ model: 'stories260K', prompt: 'x'.repeat(2_000_000) }), 413, 'body_too_large'],
      ['/v1/completions', 'model=stories260K&prompt=x', 415, 'unsupported_media_type', { 'content-type': 'application/x-www-form-urlencoded' }],
      ['/v1/completions', '{"model": "stories260K", "prompt": ', 400, 'invalid_json', { 'content-type': 'text/plain' }],
      ['/v1/chat/completions', '{"model": "stories260K"}', 400, 'missing_required_parameter'],
      ['/v1/chat/completions', '{"model": "stories260K", "messages": []}', 400, 'invalid_type'],
      ['/v1/chat/completions', '{"model": "stories260K", "messages": [{"role": "robot", "content": "x"}]}', 400, 'invalid_value'],
      ['/v1/chat/completions', '{"model": "stories260K", "messages": [{"role": "user", "content": 7}]}', 400, 'invalid_type'],
      ['/v1/chat/completions', '{"model": "stories260K", "messages": "hello"}', 400, 'invalid_type'],
      ['/v1/nothing', '{}', 404, 'unknown_url']
    ]
    for (const [path, body, status, code, headers] of cases) {
      const r = await post(path, body, headers)
      expect({ path, body: body.slice(0, 60), status: r.status, code: r.json.error?.code }).toEqual({ path, body: body.slice(0, 60), status, code })
      expect(typeof r.json.error.message).toBe('string')
      expect(r.json.error).toHaveProperty('type')
      expect(r.json.error).toHaveProperty('param')
    }
    // the official client surfaces them as typed API errors
    await expect(openai.completions.create({ model: 'no-such-model', prompt: 'x' })).rejects.toBeInstanceOf(OpenAI.NotFoundError)
    await expect(openai.completions.create({ model: 'stories260K', prompt: 'x', max_tokens: 100_000 })).rejects.toBeInstanceOf(OpenAI.BadRequestError)
    // still serving
    const ok = await openai.completions.create({ model: 'stories260K', prompt: 'Once upon a time', max_tokens: 3, temperature: 0 })
    expect(ok.choices[0].text).toBe(textOf(3))
  }, 30_000)

  it('stream: true with a refused request is a plain JSON error; 8 concurrent requests all get the reference text', async () => {
    const r = await post('/v1/completions', JSON.stringify({ model: 'stories260K', prompt: 'x', max_tokens: 100_000, stream: true }))
    expect([r.status, r.json.error.code]).toEqual([400, 'context_length_exceeded'])
    const all = await Promise.all(Array.from({ length: 8 }, async (_, i) => await openai.completions.create({ model: 'stories260K', prompt: 'Once upon a time', max_tokens: 10 + i, temperature: 0 })))
    all.forEach((c, i) => { expect(c.choices[0].text).toBe(textOf(10 + i)) })
  }, 30_000)

  const seed = testSeed()
  it(`seeded random and mutated request bodies (seed ${seed}): always an OpenAI answer, never a crash`, async () => {
    const rand = seededRandom(seed)
    const pick = <T>(xs: T[]): T => xs[Math.floor(rand() * xs.length)]
    const values = (): unknown => pick([null, true, false, 0, -1, 1.5, 1e308, -1e308, 2 ** 53, '', 'x', 'stories260K', [], [1, 2], ['a'], {}, { a: 1 }, 'Once upon a time'.repeat(Math.floor(rand() * 50))])
    const keys = ['model', 'prompt', 'messages', 'max_tokens', 'max_completion_tokens', 'temperature', 'top_p', 'n', 'stream', 'stop', 'seed', 'stream_options', 'echo', 'logprobs', '__proto__', 'constructor']
    const valid = { model: 'stories260K', prompt: 'Once upon a time', max_tokens: 2, temperature: 0 }
    for (let i = 0; i < 300; i++) {
      const body: Record<string, unknown> = rand() < 0.5 ? { ...valid } : {}
      for (let k = Math.floor(rand() * 4); k >= 0; k--) body[pick(keys)] = values()
      if (rand() < 0.3) body.messages = [{ role: pick(['user', 'robot', 7, null]), content: values() }]
      let text = JSON.stringify(body)
      if (rand() < 0.2) { const at = Math.floor(rand() * text.length); text = text.slice(0, at) + pick(['"', '{', '}', ',', '\\u0000', '']) + text.slice(at + 1) }
      const path = pick(['/v1/completions', '/v1/chat/completions'])
      const res = await fetch(`${url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: text })
      const answer = await res.text()
      if (res.status === 200) {
        expect(answer.startsWith('{') || answer.startsWith('data: ')).toBe(true)
      } else {
        const err = JSON.parse(answer) as { error: { message: string, type: string } }
        expect({ i, status: res.status, message: typeof err.error.message, type: typeof err.error.type }).toEqual({ i, status: res.status, message: 'string', type: 'string' })
        expect(res.status).toBeGreaterThanOrEqual(400)
        expect(res.status).toBeLessThan(500)
      }
    }
    expect((await fetch(`${url}/health`)).status).toBe(200)
  }, 60_000)

  it('the API over a light client (connect): same text; beyond maxInFlight a 429 rate_limit_error', async () => {
    const light = await connect({ bootstrap: [addrOf(swarm.daemons[1])], swarm: SWARM, tokenizer: TOK512 })
    const api = await startApi({ client: light, port: 0, maxInFlight: 1 })
    try {
      const local = new OpenAI({ baseURL: `${api.url}/v1`, apiKey: 'unused', maxRetries: 0 })
      const r = await local.completions.create({ model: swarm.manifest, prompt: 'Once upon a time', max_tokens: 10, temperature: 0 })
      expect(r.choices[0].text).toBe(textOf(10))
      // one long generation in flight (its first chunk arrived), then a second request
      const stream = await local.completions.create({ model: swarm.manifest, prompt: 'Once upon a time', max_tokens: 400, temperature: 0, stream: true })
      const it = stream[Symbol.asyncIterator]()
      await it.next()
      const second = await fetch(`${api.url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: swarm.manifest, prompt: 'x', max_tokens: 2 }) })
      expect(second.status).toBe(429)
      expect(((await second.json()) as { error: { type: string, code: string } }).error).toMatchObject({ type: 'rate_limit_error', code: 'too_many_requests' })
      for (let x = await it.next(); x.done !== true; x = await it.next()) { /* drain */ }
      expect((await local.completions.create({ model: swarm.manifest, prompt: 'Once upon a time', max_tokens: 3, temperature: 0 })).choices[0].text).toBe(textOf(3))
    } finally {
      await api.close()
      await light.close()
    }
  }, 30_000)

  it('a client that disconnects mid-stream frees every stage', async () => {
    const controller = new AbortController()
    const stream = await openai.completions.create({ model: 'stories260K', prompt: 'Once upon a time', max_tokens: 400, temperature: 0, stream: true }, { signal: controller.signal })
    let n = 0
    try {
      for await (const _ of stream) { if (++n === 3) controller.abort() }
    } catch (err) {
      expect((err as Error).name).toMatch(/Abort/)
    }
    expect(n).toBe(3)
    await pollUntil('every stage to hold no session', async () => {
      for (const d of swarm.daemons) {
        const s = await controlRequest(join(d.dir, 'control.sock'), { cmd: 'status' }) as { inference: { sessions: number } }
        if (s.inference.sessions !== 0) return undefined
      }
      return true
    }, 10_000)
  }, 30_000)

  it('a lone daemon is its own whole chain: the API hands the first stage its stream in process', async () => {
    const solo = await startSwarm('api-solo', 1, ['--api-port', '0', '--max-memory', '256M']) // one node holds all 5 layers
    const event = await pollUntil('the api event', async () => solo.daemons[0].events.find((e) => e.event === 'api'), 10_000)
    const client = new OpenAI({ baseURL: `${event.url as string}/v1`, apiKey: 'unused', maxRetries: 0 })
    const r = await client.completions.create({ model: 'stories260K', prompt: 'Once upon a time', max_tokens: 20, temperature: 0 })
    expect(r.choices[0].text).toBe(textOf(20))
    const status = await controlRequest(join(solo.daemons[0].dir, 'control.sock'), { cmd: 'status' }) as { inference: { opened: number, sessions: number } }
    expect(status.inference).toMatchObject({ opened: 1, sessions: 0 })
  }, 30_000)

  it('--api-port and --api-host are checked: one-line errors, exit 1', () => {
    for (const [args, message] of [
      [['--api-port', '99999'], /--api-port: must be a port number/],
      [['--api-port', 'http'], /--api-port: must be a port number/],
      [['--api-host', '0.0.0.0'], /--api-host needs --api-port/]
    ] as const) {
      const r = runCli(['node', 'start', '--data-dir', scratch('mycelium-api-cfg-'), '--listen', '/ip4/127.0.0.1/tcp/0', '--no-mdns', '--no-upnp', ...args])
      expect(r.status).toBe(1)
      expect(r.stderr.trim().split('\n')).toHaveLength(1)
      expect(r.stderr).toMatch(message)
    }
  }, 30_000)

  it('health and Prometheus metrics: requests, tokens, latency, errors by type', async () => {
    const health = await (await fetch(`${url}/health`)).json() as { status: string, covered: string[], swarm: string }
    expect(health).toMatchObject({ status: 'ok', swarm: SWARM, covered: [swarm.manifest] })
    const res = await fetch(`${url}/metrics`)
    expect(res.headers.get('content-type')).toMatch(/^text\/plain/)
    const text = await res.text()
    expect(text).toMatch(/mycelium_api_requests_total\{route="\/v1\/completions",status="200"\} \d+/)
    expect(text).toMatch(/mycelium_api_requests_total\{route="\/v1\/completions",status="400"\} \d+/)
    expect(text).toMatch(/mycelium_api_tokens_total\{kind="completion"\} \d+/)
    expect(text).toMatch(/mycelium_api_request_duration_seconds_bucket\{le="0.005",route="\/v1\/completions"\} \d+/)
    expect(text).toMatch(/mycelium_api_errors_total\{type="model_not_found"\} \d+/)
    expect(text).toMatch(/mycelium_api_errors_total\{type="context_length_exceeded"\} \d+/)
    // every request counted once, streamed ones included: a fresh server counts exactly what it was sent
    const before = await metricValue(url, 'mycelium_api_requests_total{route="/v1/completions",status="200"}')
    await openai.completions.create({ model: 'stories260K', prompt: 'Once upon a time', max_tokens: 2, temperature: 0 })
    for await (const _ of await openai.completions.create({ model: 'stories260K', prompt: 'Once upon a time', max_tokens: 2, temperature: 0, stream: true })) { /* drain */ }
    expect(await metricValue(url, 'mycelium_api_requests_total{route="/v1/completions",status="200"}')).toBe(before + 2)
  })
})

async function metricValue (base: string, series: string): Promise<number> {
  const line = (await (await fetch(`${base}/metrics`)).text()).split('\n').find((l) => l.startsWith(series + ' '))
  return line === undefined ? 0 : Number(line.slice(series.length + 1))
}

function textOf (n: number): string {
  return ref.textOf(n)
}
