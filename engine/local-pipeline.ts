// Several stage sessions chained in one process, hidden states passed through a wire codec
// between them exactly as they would travel between nodes. Used to prove that any split of the
// layers gives the same tokens as one process, and to measure what lossy codecs cost.
import { decodeHidden, encodeHidden, type HiddenCodec } from './codecs.ts'
import type { LogitStepper } from './generate.ts'
import type { Session } from './index.ts'

export interface LocalPipeline extends LogitStepper {
  /** Bytes of hidden state that crossed stage boundaries so far. */
  readonly wireBytes: number
}

export function createLocalPipeline (sessions: Session[], codec: HiddenCodec = 'f32'): LocalPipeline {
  let wireBytes = 0
  return {
    get position () { return sessions[0].position },
    get wireBytes () { return wireBytes },
    step (tokens: number[]): Float32Array {
      let out = sessions[0].step({ tokens })
      for (let i = 1; i < sessions.length; i++) {
        const hidden = out.hidden as Float32Array
        const bytes = encodeHidden(codec, hidden)
        wireBytes += bytes.length
        out = sessions[i].step({ hidden: decodeHidden(codec, bytes, hidden.length) })
      }
      return out.logits as Float32Array
    }
  }
}
