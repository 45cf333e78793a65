// Where the shared models live: ../shared/models beside the repository (MYCELIUM_MODELS overrides).
import { fileURLToPath } from 'node:url'

export const MODELS = process.env.MYCELIUM_MODELS ?? fileURLToPath(new URL('../../shared/models', import.meta.url))
export const STORIES260K = `${MODELS}/stories260K/stories260K.bin`
export const TOK512 = `${MODELS}/stories260K/tok512.bin`
