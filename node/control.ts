// The daemon's local control socket: newline-delimited JSON over a Unix socket in the data
// directory (folder 0700, socket 0600), so only the user running the daemon can use it.
//   request  {"cmd": "<name>", ...args}\n
//   response {"ok": true, ...result}\n  |  {"ok": false, "error": {"name", "message"}}\n
// `mycelium doctor` and the NAT lab drive running daemons through it.
import { chmod, rm } from 'node:fs/promises'
import { createConnection, createServer } from 'node:net'
import type { Server, Socket } from 'node:net'
import { CONTROL_MAX_LINE_BYTES, CONTROL_TIMEOUT_MS } from './constants.ts'
import { ControlError } from './errors.ts'

export type ControlRequest = Record<string, unknown> & { cmd: string }
export type ControlHandler = (request: ControlRequest, signal: AbortSignal) => Promise<Record<string, unknown>>

/** Serves `handler` on the socket at `path` (replacing a stale socket file). */
export async function serveControl (path: string, handler: ControlHandler): Promise<{ close: () => Promise<void> }> {
  await rm(path, { force: true })
  const sockets = new Set<Socket>()
  const server: Server = createServer((socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => socket.destroy())
    let buffer = ''
    socket.setEncoding('utf8')
    socket.on('data', (data: string) => {
      buffer += data
      if (buffer.length > CONTROL_MAX_LINE_BYTES) {
        socket.end(JSON.stringify({ ok: false, error: { name: 'ControlError', message: 'request line too long' } }) + '\n')
        return
      }
      let nl: number
      while ((nl = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, nl)
        buffer = buffer.slice(nl + 1)
        void answer(socket, line, handler)
      }
    })
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(path, () => { resolve() })
  })
  await chmod(path, 0o600)
  return {
    close: async () => {
      for (const s of sockets) s.destroy()
      await new Promise<void>((resolve) => server.close(() => { resolve() }))
      await rm(path, { force: true })
    }
  }
}

async function answer (socket: Socket, line: string, handler: ControlHandler): Promise<void> {
  let reply: Record<string, unknown>
  try {
    const request = JSON.parse(line) as ControlRequest
    if (typeof request?.cmd !== 'string') throw new ControlError('request needs a "cmd" string')
    reply = { ok: true, ...await handler(request, AbortSignal.timeout(CONTROL_TIMEOUT_MS)) }
  } catch (err) {
    const e = err as Error
    reply = { ok: false, error: { name: e.name, message: e.message } }
  }
  if (!socket.destroyed) socket.write(JSON.stringify(reply) + '\n')
}

/** Sends one request to the daemon at `path` and returns its result (throws ControlError). */
export async function controlRequest (path: string, request: ControlRequest, options: { timeoutMs?: number } = {}): Promise<Record<string, unknown>> {
  return await new Promise((resolve, reject) => {
    const socket = createConnection(path)
    let buffer = ''
    const timer = setTimeout(() => {
      socket.destroy()
      reject(new ControlError(`no answer from the daemon at ${path} within ${options.timeoutMs ?? CONTROL_TIMEOUT_MS} ms`))
    }, options.timeoutMs ?? CONTROL_TIMEOUT_MS)
    socket.setEncoding('utf8')
    socket.on('connect', () => socket.write(JSON.stringify(request) + '\n'))
    socket.on('data', (data: string) => {
      buffer += data
      const nl = buffer.indexOf('\n')
      if (nl < 0) return
      clearTimeout(timer)
      socket.end()
      const reply = JSON.parse(buffer.slice(0, nl)) as { ok: boolean, error?: { name: string, message: string } }
      if (reply.ok) resolve(reply)
      else reject(new ControlError(`${reply.error?.name ?? 'Error'}: ${reply.error?.message ?? 'unknown'}`))
    })
    socket.on('error', (err) => {
      clearTimeout(timer)
      reject(new ControlError(`no daemon listening at ${path} (${(err as NodeJS.ErrnoException).code ?? err.message})`, { cause: err }))
    })
  })
}
