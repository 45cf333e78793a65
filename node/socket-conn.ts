// A libp2p MultiaddrConnection over a Node TCP socket we connected ourselves (the hole punch),
// so libp2p's upgrader can run Noise and Yamux on it like on any dialled connection.
import { AbstractMultiaddrConnection } from '@libp2p/utils'
import type { AbortOptions, Logger } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import type { Socket } from 'node:net'
import type { Uint8ArrayList } from 'uint8arraylist'
import { PUNCHED_SOCKET_IDLE_MS } from './constants.ts'

class SocketConnection extends AbstractMultiaddrConnection {
  private readonly socket: Socket

  constructor (socket: Socket, remoteAddr: Multiaddr, direction: 'inbound' | 'outbound', log: Logger) {
    super({ remoteAddr, direction, log, inactivityTimeout: PUNCHED_SOCKET_IDLE_MS })
    this.socket = socket
    socket.on('data', (buf: Buffer) => { this.onData(buf) })
    socket.on('error', (err) => { this.abort(err) })
    socket.on('drain', () => { this.safeDispatchEvent('drain') })
    socket.once('end', () => { this.onTransportClosed() })
    socket.once('close', (hadError) => {
      if (hadError) this.abort(new Error('TCP transmission error'))
      else this.onTransportClosed()
    })
  }

  sendData (data: Uint8ArrayList): { sentBytes: number, canSendMore: boolean } {
    let sentBytes = 0
    let canSendMore = true
    for (const buf of data) {
      sentBytes += buf.byteLength
      canSendMore = this.socket.write(buf)
      if (!canSendMore) break
    }
    return { sentBytes, canSendMore }
  }

  async sendClose (options?: AbortOptions): Promise<void> {
    if (this.socket.destroyed) return
    const closed = new Promise<void>((resolve) => this.socket.once('close', () => { resolve() }))
    this.socket.destroySoon()
    await (options?.signal == null ? closed : Promise.race([closed, new Promise<void>((resolve) => options.signal?.addEventListener('abort', () => { resolve() }, { once: true }))]))
  }

  sendReset (): void {
    if (this.socket.writableEnded) this.socket.destroy()
    else this.socket.resetAndDestroy()
  }

  sendPause (): void {
    this.socket.pause()
  }

  sendResume (): void {
    this.socket.resume()
  }
}

/** Wraps a connected socket for libp2p's upgrader. */
export function socketConnection (socket: Socket, remoteAddr: Multiaddr, direction: 'inbound' | 'outbound', log: Logger): AbstractMultiaddrConnection {
  return new SocketConnection(socket, remoteAddr, direction, log)
}
