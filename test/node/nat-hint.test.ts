// NAT behaviour hints from observed addresses and local ports.
import { describe, expect, it } from 'vitest'
import { natHint, parseProcNetTcp } from '../../node/nat-hint.ts'

describe('NAT hint', () => {
  it('classifies no NAT, port-preserving, port-translating and unknown', () => {
    expect(natHint([], ['10.0.0.2']).behaviour).toBe('unknown')
    expect(natHint([{ observedIp: '10.0.0.2', observedPort: 5000, localPort: 5000 }], ['10.0.0.2']).behaviour).toBe('none')
    expect(natHint([{ observedIp: '11.0.0.11', observedPort: 40000, localPort: 40000 }, { observedIp: '11.0.0.11', observedPort: 40002, localPort: 40002 }], ['192.168.1.2']).behaviour).toBe('port-preserving')
    expect(natHint([{ observedIp: '11.0.0.13', observedPort: 21806, localPort: 40000 }], ['192.168.3.2']).behaviour).toBe('port-translating')
    expect(natHint([{ observedIp: '11.0.0.13', observedPort: 21806 }], ['192.168.3.2']).behaviour).toBe('unknown')
    // one stray mismatch (e.g. a hole-punched socket) does not turn a cone into a symmetric NAT
    expect(natHint([{ observedIp: '11.0.0.11', observedPort: 40000, localPort: 40000 }, { observedIp: '11.0.0.11', observedPort: 50000, localPort: 40001 }], ['192.168.1.2']).behaviour).toBe('port-preserving')
  })

  it('reads local ports of IPv4 sockets from /proc/net/tcp text', () => {
    const text = [
      '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode',
      '   0: 0201A8C0:9C40 0200000B:0FA1 01 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 20 4 30 10 -1',
      '   1: 00000000:0FA1 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1 0000000000000000 100 0 0 10 0',
      // a TIME_WAIT socket to the same peer from an earlier connection is ignored
      '   2: 0201A8C0:9C41 0200000B:0FA1 06 00000000:00000000 00:00000000 00000000     0        0 0 1 0000000000000000 20 4 30 10 -1'
    ].join('\n')
    const table = parseProcNetTcp(text)
    // 192.168.1.2:40000 → 11.0.0.2:4001
    expect(table.get('11.0.0.2:4001')).toBe(40000)
  })
})
