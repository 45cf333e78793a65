// Checks of generate's options (InvalidRequestError naming the field).
import { InvalidRequestError } from './errors.ts'
import type { GenerateOptions } from './types.ts'

export function check (ok: boolean, message: string, param: string): void {
  if (!ok) throw new InvalidRequestError(message, param)
}

/** Validates the sampling options (throws InvalidRequestError naming the field). */
export function checkOptions (o: Omit<GenerateOptions, 'prompt'>): void {
  check(o.maxTokens === undefined || (Number.isSafeInteger(o.maxTokens) && o.maxTokens >= 1), 'maxTokens must be an integer ≥ 1', 'maxTokens')
  check(o.temperature === undefined || (typeof o.temperature === 'number' && Number.isFinite(o.temperature) && o.temperature >= 0 && o.temperature <= 2), 'temperature must be a number in [0, 2]', 'temperature')
  check(o.topP === undefined || (typeof o.topP === 'number' && o.topP > 0 && o.topP <= 1), 'topP must be a number in (0, 1]', 'topP')
  check(o.topK === undefined || (Number.isSafeInteger(o.topK) && o.topK >= 0), 'topK must be an integer ≥ 0', 'topK')
  check(o.seed === undefined || (Number.isSafeInteger(o.seed) && o.seed >= 0), 'seed must be a non-negative integer', 'seed')
  check(o.stop === undefined || (Array.isArray(o.stop) && o.stop.length <= 4 && o.stop.every((s) => typeof s === 'string' && s.length > 0 && s.length <= 256)), 'stop must be at most 4 non-empty strings', 'stop')
  check(o.model === undefined || typeof o.model === 'string', 'model must be a string', 'model')
}
