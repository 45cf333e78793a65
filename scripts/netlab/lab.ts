// The NAT lab: real network namespaces, veth links, a bridge "internet", nftables routers
// (cone, symmetric, UPnP via miniupnpd) and real `mycelium node start` daemons inside them.
// Root only. Every name carries the owning process id (`myl<pid>-…`), so a lab left behind by a
// crashed run is found and removed before a new one is built; `destroy()` runs on success,
// failure, SIGINT/SIGTERM and process exit. See README.md beside this file.
import { execFileSync, spawn, spawnSync } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { controlRequest } from '../../node/control.ts'
import { HOME_NETS, PUBLIC_HOSTS, miniupnpdConf, routerRules } from './topology.ts'
import type { HomeNet } from './topology.ts'

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..')
const NODE = join(ROOT, 'node_modules', '.bin', 'node')
const CLI = join(ROOT, 'node', 'cli.ts')
const PREFIX_RE = /^myl(\d+)-/
/** How long a daemon may take to print its ready line. */
const READY_TIMEOUT_MS = 30_000
/** How long a stopped daemon may take to exit before it is killed. */
const STOP_TIMEOUT_MS = 10_000

function run (cmd: string, args: string[], input?: string): string {
  return execFileSync(cmd, args, { encoding: 'utf8', input, stdio: ['pipe', 'pipe', 'pipe'] })
}

function tryRun (cmd: string, args: string[]): boolean {
  return spawnSync(cmd, args, { stdio: 'ignore' }).status === 0
}

/** Why the lab cannot run here, or undefined when it can. */
export function labUnavailableReason (): string | undefined {
  if (process.getuid?.() !== 0) return 'not root (network namespaces need CAP_NET_ADMIN)'
  if (!tryRun('ip', ['netns', 'list'])) return '`ip netns` does not work here'
  if (!tryRun('nft', ['--version'])) return 'nft (nftables) is not installed'
  return undefined
}

/** True when miniupnpd is installed (the UPnP router needs it). */
export function hasMiniupnpd (): boolean {
  return existsSync('/usr/sbin/miniupnpd')
}

function alive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

function killNamespace (ns: string): void {
  const pids = spawnSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' }).stdout?.split('\n').filter(Boolean).map(Number) ?? []
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err
    }
  }
  tryRun('ip', ['netns', 'del', ns])
}

/** Removes namespaces of labs whose owning process is gone (or all of ours with `all`). */
export function cleanStaleLabs (options: { all?: boolean } = {}): string[] {
  const removed: string[] = []
  const names = run('ip', ['netns', 'list']).split('\n').map((l) => l.split(' ')[0]).filter(Boolean)
  for (const ns of names) {
    const m = PREFIX_RE.exec(ns)
    if (m == null) continue
    const owner = Number(m[1])
    if (options.all !== true && (owner === process.pid || alive(owner))) continue
    killNamespace(ns)
    removed.push(ns)
  }
  for (const dir of readdirSync(tmpdir())) {
    const m = /^mycelium-netlab-(\d+)$/.exec(dir)
    if (m != null && (options.all === true || !alive(Number(m[1])))) rmSync(join(tmpdir(), dir), { recursive: true, force: true })
  }
  return removed
}

export interface StartOptions {
  /** Listen multiaddrs; default TCP 4001 on every interface. */
  listen?: string[]
  bootstrap?: string[]
  announce?: string[]
  public?: boolean
  swarm?: string
  /** Keep the data directory of an earlier run of this node (same identity). */
  dataDir?: string
  upnp?: boolean
  dcutr?: boolean
  logLevel?: string
  /** Extra environment (e.g. DEBUG=libp2p:upnp-nat* for libp2p's own logs on stderr). */
  env?: Record<string, string>
}

export interface LabNode {
  name: string
  ns: string
  peerId: string
  dataDir: string
  control: string
  /** Milliseconds from spawn to the ready line. */
  readyMs: number
  spawnedAt: number
  proc: ChildProcess
  log: string[]
}

export class NetLab {
  readonly prefix = `myl${process.pid}-`
  readonly dir = join(tmpdir(), `mycelium-netlab-${process.pid}`)
  readonly nodes = new Map<string, LabNode>()
  readonly miniupnpdLog: string[] = []
  private readonly children = new Set<ChildProcess>()
  private readonly namespaces: string[] = []
  private destroyed = false
  private readonly onSignal = (signal: NodeJS.Signals): void => {
    this.destroySync()
    process.exit(signal === 'SIGINT' ? 130 : 143)
  }

  private readonly onExit = (): void => { this.destroySync() }

  ns (name: string): string {
    return `${this.prefix}${name}`
  }

  /** Builds the whole topology (see topology.ts); removes stale labs first. */
  static create (options: { upnp?: boolean } = {}): NetLab {
    const reason = labUnavailableReason()
    if (reason !== undefined) throw new Error(`the NAT lab cannot run: ${reason}`)
    cleanStaleLabs()
    const lab = new NetLab()
    process.once('SIGINT', lab.onSignal)
    process.once('SIGTERM', lab.onSignal)
    process.once('exit', lab.onExit)
    try {
      lab.build(options.upnp ?? hasMiniupnpd())
    } catch (err) {
      lab.destroySync()
      throw err
    }
    return lab
  }

  private addNs (name: string): string {
    const ns = this.ns(name)
    run('ip', ['netns', 'add', ns])
    this.namespaces.push(ns)
    run('ip', ['-n', ns, 'link', 'set', 'lo', 'up'])
    return ns
  }

  private build (upnp: boolean): void {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 })
    const inet = this.addNs('inet')
    run('ip', ['-n', inet, 'link', 'add', 'br0', 'type', 'bridge'])
    run('ip', ['-n', inet, 'link', 'set', 'br0', 'up'])
    const plug = (ns: string, ifname: string, port: string, ip: string): void => {
      run('ip', ['link', 'add', 'name', ifname, 'netns', ns, 'type', 'veth', 'peer', 'name', port, 'netns', inet])
      run('ip', ['-n', inet, 'link', 'set', port, 'master', 'br0', 'up'])
      run('ip', ['-n', ns, 'addr', 'add', `${ip}/24`, 'dev', ifname])
      run('ip', ['-n', ns, 'link', 'set', ifname, 'up'])
    }
    for (const h of PUBLIC_HOSTS) plug(this.addNs(h.name), 'wan', h.name, h.ip)
    for (const net of HOME_NETS) {
      if (net.kind === 'upnp' && !upnp) continue
      const router = this.addNs(net.router)
      const host = this.addNs(net.host)
      plug(router, 'wan', net.router, net.wanIp)
      run('ip', ['link', 'add', 'name', 'lan', 'netns', router, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', host])
      run('ip', ['-n', router, 'addr', 'add', `${net.gatewayIp}/24`, 'dev', 'lan'])
      run('ip', ['-n', router, 'link', 'set', 'lan', 'up'])
      run('ip', ['-n', host, 'addr', 'add', `${net.hostIp}/24`, 'dev', 'eth0'])
      run('ip', ['-n', host, 'link', 'set', 'eth0', 'up'])
      run('ip', ['-n', host, 'route', 'add', 'default', 'via', net.gatewayIp])
      run('ip', ['netns', 'exec', router, 'sysctl', '-q', '-w', 'net.ipv4.ip_forward=1'])
      run('ip', ['netns', 'exec', router, 'nft', '-f', '-'], routerRules(net.kind))
      if (net.kind === 'upnp') this.startMiniupnpd(net)
    }
  }

  private startMiniupnpd (net: HomeNet): void {
    const conf = join(this.dir, `miniupnpd-${net.router}.conf`)
    writeFileSync(conf, miniupnpdConf(net, '3f1a6b2e-0000-4000-8000-00000000000' + String(HOME_NETS.indexOf(net))))
    const proc = spawn('ip', ['netns', 'exec', this.ns(net.router), '/usr/sbin/miniupnpd', '-d', '-f', conf, '-P', join(this.dir, `miniupnpd-${net.router}.pid`)], { stdio: ['ignore', 'pipe', 'pipe'] })
    proc.stdout?.on('data', (d: Buffer) => this.miniupnpdLog.push(d.toString()))
    proc.stderr?.on('data', (d: Buffer) => this.miniupnpdLog.push(d.toString()))
    this.children.add(proc)
  }

  /** Whether miniupnpd answers SSDP in the UPnP router (polls until `deadline`). */
  async waitForMiniupnpd (timeoutMs = 10_000): Promise<void> {
    const ns = this.ns('ru')
    await pollUntil(() => run('ip', ['netns', 'exec', ns, 'ss', '-uln']).includes(':1900'), timeoutMs, 'miniupnpd listening on udp/1900')
  }

  /** Starts `mycelium node start` in the namespace `name`; resolves on its ready line. */
  async startNode (name: string, options: StartOptions = {}): Promise<LabNode> {
    const ns = this.ns(name)
    const dataDir = options.dataDir ?? join(this.dir, name)
    const args = [CLI, 'node', 'start', '--data-dir', dataDir, '--no-mdns', '--log-level', options.logLevel ?? 'info',
      '--listen', ...(options.listen ?? ['/ip4/0.0.0.0/tcp/4001'])]
    if ((options.bootstrap ?? []).length > 0) args.push('--bootstrap', ...(options.bootstrap ?? []))
    if ((options.announce ?? []).length > 0) args.push('--announce', ...(options.announce ?? []))
    if (options.public === true) args.push('--public')
    if (options.swarm !== undefined) args.push('--swarm', options.swarm)
    if (options.upnp === false) args.push('--no-upnp')
    if (options.dcutr === true) args.push('--dcutr')
    const spawnedAt = performance.now()
    const proc = spawn('ip', ['netns', 'exec', ns, NODE, ...args], { stdio: ['ignore', 'pipe', 'pipe'], cwd: ROOT, env: { ...process.env, ...options.env } })
    this.children.add(proc)
    proc.once('exit', () => this.children.delete(proc))
    const log: string[] = []
    const lines = createInterface({ input: proc.stdout! })
    proc.stderr?.on('data', (d: Buffer) => log.push(d.toString()))
    const ready = await new Promise<Record<string, unknown>>((resolve, reject) => {
      const timer = setTimeout(() => { reject(new Error(`${name}: no ready line within ${READY_TIMEOUT_MS} ms\n${log.join('\n')}`)) }, READY_TIMEOUT_MS)
      proc.once('exit', (code) => { clearTimeout(timer); reject(new Error(`${name}: exited with ${code} before ready\n${log.join('\n')}`)) })
      lines.on('line', (line) => {
        log.push(line)
        if (line.includes('"event":"ready"')) {
          clearTimeout(timer)
          resolve(JSON.parse(line) as Record<string, unknown>)
        }
      })
    })
    const node: LabNode = { name, ns, peerId: String(ready.peerId), dataDir, control: String(ready.control), readyMs: performance.now() - spawnedAt, spawnedAt, proc, log }
    this.nodes.set(name, node)
    return node
  }

  /** Stops a node with SIGTERM (SIGKILL after STOP_TIMEOUT_MS); resolves with its exit code. */
  async stopNode (name: string): Promise<number | null> {
    const node = this.nodes.get(name)
    if (node == null) return null
    this.nodes.delete(name)
    if (node.proc.exitCode !== null) return node.proc.exitCode
    const exited = new Promise<number | null>((resolve) => node.proc.once('exit', (code) => { resolve(code) }))
    node.proc.kill('SIGTERM')
    const timer = setTimeout(() => node.proc.kill('SIGKILL'), STOP_TIMEOUT_MS)
    const code = await exited
    clearTimeout(timer)
    return code
  }

  /** Sends a control request to a node's daemon. */
  async request (name: string, cmd: Record<string, unknown> & { cmd: string }, timeoutMs = 60_000): Promise<Record<string, unknown>> {
    const node = this.nodes.get(name)
    if (node == null) throw new Error(`no lab node ${name}`)
    return await controlRequest(node.control, cmd, { timeoutMs })
  }

  async destroy (): Promise<void> {
    await Promise.all([...this.nodes.keys()].map(async (n) => await this.stopNode(n)))
    this.destroySync()
  }

  /** Kills every child, deletes every namespace and the scratch folder; safe to call twice. */
  destroySync (): void {
    if (this.destroyed) return
    this.destroyed = true
    process.removeListener('SIGINT', this.onSignal)
    process.removeListener('SIGTERM', this.onSignal)
    process.removeListener('exit', this.onExit)
    for (const child of this.children) {
      if (child.exitCode === null && child.pid !== undefined) child.kill('SIGKILL')
    }
    for (const ns of this.namespaces.reverse()) killNamespace(ns)
    rmSync(this.dir, { recursive: true, force: true })
  }
}

/** Polls `check` every 100 ms until it returns truthy or `timeoutMs` passes (then throws). */
export async function pollUntil<T> (check: () => T | Promise<T>, timeoutMs: number, what: string): Promise<NonNullable<T>> {
  const deadline = performance.now() + timeoutMs
  let lastError: unknown
  for (;;) {
    try {
      const value = await check()
      if (value !== undefined && value !== null && value !== false) return value as NonNullable<T>
    } catch (err) {
      lastError = err
    }
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastError != null ? ` (last error: ${(lastError as Error).message})` : ''}`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

/** `ip netns exec` for one-off commands in a namespace (returns stdout). */
export function nsExec (lab: NetLab, name: string, cmd: string[]): string {
  return run('ip', ['netns', 'exec', lab.ns(name), ...cmd])
}
