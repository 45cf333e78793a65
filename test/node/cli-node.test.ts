// `mycelium node start` and `mycelium doctor` as a user runs them: flag validation errors are one
// clear line and exit 1; the daemon prints a ready line, answers doctor, stops on SIGTERM.
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { cleanupDaemons, runCli as run, scratch as scratchDir, startDaemon, stopDaemon } from './daemons.ts'

const scratch = (): string => scratchDir('mycelium-cli-')

afterEach(cleanupDaemons)

describe('mycelium node start / doctor', () => {
  it.each([
    [['--listen', 'not-an-addr'], /--listen: not a multiaddr/],
    [['--swarm', 'Bad_Name'], /--swarm: invalid swarm name/],
    [['--bootstrap', '/ip4/1.2.3.4/tcp/4001'], /--bootstrap: .* has no \/p2p\/<peer id>/],
    [['--frobnicate'], /unknown option '--frobnicate'/]
  ])('rejects %j with a clear one-line error', (flags, message) => {
    const r = run(['node', 'start', '--data-dir', scratch(), ...flags])
    expect(r.status).toBe(1)
    expect(r.stderr).toMatch(message)
    expect(r.stderr).not.toMatch(/\n\s+at /)
  })

  it('stops on a corrupt identity with a named, one-line error', () => {
    const dir = scratch()
    writeFileSync(join(dir, 'identity.key'), 'garbage', { mode: 0o600 })
    const r = run(['node', 'start', '--data-dir', dir, '--listen', '/ip4/127.0.0.1/tcp/0', '--no-mdns', '--no-upnp'])
    expect(r.status).toBe(1)
    expect(r.stderr).toMatch(/identity key .* is corrupt/)
  })

  it('doctor without a running daemon probes with a short-lived node and says so', () => {
    const dir = scratch()
    const r = run(['doctor', '--data-dir', dir, '--listen', '/ip4/127.0.0.1/tcp/0', '--no-mdns', '--no-upnp', '--wait', '0'])
    expect(r.status).toBe(0)
    expect(r.stdout).toMatch(/^peer id +12D3KooW/m)
    expect(r.stdout).toMatch(/reachability unknown/)
    expect(r.stdout).toMatch(/no daemon running: a short-lived node with a throw-away identity/)
  })

  it('starts, prints a ready line, answers doctor, and exits 0 on SIGTERM', async () => {
    const dir = scratch()
    const { child, ready } = await startDaemon(dir, ['--public'])
    expect(String(ready.peerId)).toMatch(/^12D3KooW/)
    const doctor = run(['doctor', '--data-dir', dir, '--json'])
    expect(doctor.status).toBe(0)
    const report = JSON.parse(doctor.stdout) as Record<string, unknown>
    expect(report.peerId).toBe(ready.peerId)
    expect(String(report.source)).toMatch(/running daemon/)
    expect(await stopDaemon(child)).toBe(0)
  })
})
