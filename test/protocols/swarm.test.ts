// Swarm separation: every wire name carries the swarm, and no name of one swarm is accepted as
// belonging to another.
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { dhtProtocol, isSwarmProtocol, modelProviderKey, protocolId, swarmProtocolPrefix, topicName, validateSwarmName } from '../../protocols/index.ts'
import { testSeed } from '../seed.ts'

const seed = testSeed()
const swarmName = fc.stringMatching(/^[a-z0-9][a-z0-9-]{0,20}$/)

describe(`swarm naming (TEST_SEED=${seed})`, () => {
  it('builds ids of the form /mycelium/<swarm>/<name>/<version>', () => {
    expect(protocolId('public', 'bulk', '1.0.0')).toBe('/mycelium/public/bulk/1.0.0')
    expect(dhtProtocol('lab-7')).toBe('/mycelium/lab-7/kad/1.0.0')
    expect(topicName('lab-7', 'presence')).toBe('mycelium/lab-7/presence')
    expect(swarmProtocolPrefix('a')).toBe('/mycelium/a/')
  })

  it('rejects names that could break out of their segment', () => {
    for (const bad of ['', 'Public', 'a/b', 'a b', '-lead', 'x'.repeat(49), 'ü']) {
      expect(() => validateSwarmName(bad), bad).toThrow(expect.objectContaining({ name: 'InvalidSwarmNameError' }))
    }
    expect(() => protocolId('ok', 'bad/name', '1.0.0')).toThrow(/invalid protocol/)
    expect(() => modelProviderKey('ok', 'not-a-hash')).toThrow(/64 lowercase hex/)
  })

  it('two different swarms never share a protocol id, DHT protocol, topic or provider key', () => {
    fc.assert(fc.property(swarmName, swarmName, fc.stringMatching(/^[a-z][a-z0-9-]{0,10}$/), (a, b, name) => {
      fc.pre(a !== b)
      expect(protocolId(a, name, '1.0.0')).not.toBe(protocolId(b, name, '1.0.0'))
      expect(isSwarmProtocol(a, protocolId(b, name, '1.0.0'))).toBe(false)
      expect(isSwarmProtocol(b, protocolId(b, name, '1.0.0'))).toBe(true)
      expect(dhtProtocol(a)).not.toBe(dhtProtocol(b))
      expect(topicName(a, name)).not.toBe(topicName(b, name))
      const h = 'ab'.repeat(32)
      expect(Buffer.from(modelProviderKey(a, h)).equals(Buffer.from(modelProviderKey(b, h)))).toBe(false)
    }), { seed, numRuns: 200 })
  })
})
