// Framing shared by the stage service and the client: one pbStream of `Frame`s per stream, bounded
// before decoding, with writes serialised so frames never interleave, and the mapping between the
// wire's codec enum and the engine's codec names.
import { pbStream } from '@libp2p/utils'
import type { AbortOptions, Stream } from '@libp2p/interface'
import type { HiddenCodec as EngineCodec } from '../../engine/codecs.ts'
import { Frame, HiddenCodec, Status } from './inference.pb.js'
import { INFERENCE_CLOSE_TIMEOUT_MS, INFERENCE_MAX_FRAME_BYTES } from './constants.ts'

/** One stream of frames: reads one at a time, writes queued in order. */
export interface FrameChannel {
  readonly stream: Stream
  read: (options?: AbortOptions) => Promise<Frame>
  write: (frame: Partial<Frame>) => Promise<void>
  /** Writes `frame` if given, then closes gracefully; aborts the stream if that fails. */
  end: (frame?: Partial<Frame>) => Promise<void>
}

export function frameChannel (stream: Stream, maxFrameBytes = INFERENCE_MAX_FRAME_BYTES): FrameChannel {
  const pb = pbStream(stream, { maxDataLength: maxFrameBytes })
  let queue: Promise<void> = Promise.resolve()
  const write = async (frame: Partial<Frame>): Promise<void> => {
    const next = queue.then(async () => {
      try {
        await pb.write(frame as Frame, Frame)
      } catch (err) {
        throw asError(err)
      }
    })
    queue = next.catch(() => {})
    await next
  }
  let ended: Promise<void> | undefined
  return {
    stream,
    read: async (options = {}) => {
      try {
        return await pb.read(Frame, options)
      } catch (err) {
        throw asError(err)
      }
    },
    write,
    end: async (frame) => {
      ended ??= (async () => {
        try {
          if (frame !== undefined) await write(frame)
          await queue
          await stream.close({ signal: AbortSignal.timeout(INFERENCE_CLOSE_TIMEOUT_MS) })
        } catch (err) {
          stream.abort(asError(err))
        }
      })()
      await ended
    }
  }
}

/**
 * Every rejection as an Error with a message. A write awaiting the stream's drain rejects with the
 * stream's `close` *event* when the stream closes meanwhile (p-event's rejection value): its
 * `error` (a reset, an abort) if it carries one, else a StreamClosedError.
 */
export function asError (reason: unknown): Error {
  if (reason instanceof Error) return reason
  if (typeof Event !== 'undefined' && reason instanceof Event) {
    const error = (reason as Event & { error?: unknown }).error
    if (error instanceof Error) return error
    return Object.assign(new Error(`the stream closed (${reason.type} event) during the operation`), { name: 'StreamClosedError' })
  }
  return new Error(typeof reason === 'string' ? reason : `non-error rejection: ${String(reason)}`)
}

/** The status a failed read maps to: oversize frames are TOO_LARGE, anything else MALFORMED. */
export function readFailureStatus (err: unknown): Status {
  const name = (err as Error).name
  return name === 'InvalidDataLengthError' || name === 'InvalidDataLengthLengthError' ? Status.TOO_LARGE : Status.MALFORMED
}

/** True when a read failed because the other side closed its end. */
export function isEndOfStream (err: unknown): boolean {
  return (err as Error).name === 'UnexpectedEOFError'
}

/** True when a read failed because the stream or its connection was reset or closed under it. */
export function isReset (err: unknown): boolean {
  const name = (err as Error).name
  return name === 'StreamResetError' || name === 'StreamAbortedError' || name === 'StreamStateError' || name === 'ConnectionClosedError' || name === 'StreamClosedError'
}

const TO_ENGINE: Record<HiddenCodec, EngineCodec> = { [HiddenCodec.F32]: 'f32', [HiddenCodec.F16]: 'f16', [HiddenCodec.INT8]: 'int8' }
const TO_WIRE: Record<EngineCodec, HiddenCodec> = { f32: HiddenCodec.F32, f16: HiddenCodec.F16, int8: HiddenCodec.INT8 }

export function engineCodec (codec: HiddenCodec): EngineCodec | undefined {
  return TO_ENGINE[codec]
}

export function wireCodec (codec: EngineCodec): HiddenCodec {
  return TO_WIRE[codec]
}
