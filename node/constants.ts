// Defaults of node/ (durations in milliseconds, sizes in bytes).
import { homedir } from 'node:os'
import { join } from 'node:path'

/** Where a node keeps its identity and control socket unless --data-dir says otherwise. */
export const DEFAULT_DATA_DIR = join(homedir(), '.mycelium')
/** File name of the Ed25519 identity inside the data directory. */
export const IDENTITY_FILE = 'identity.key'
/** Folder of the replicated swarm documents inside the data directory (one subfolder per swarm). */
export const STATE_DIR = 'state'
/** File name of the daemon's control socket inside the data directory. */
export const CONTROL_SOCKET = 'control.sock'
/** Listen addresses when none are given: TCP and WebSockets on every interface, ephemeral ports. */
export const DEFAULT_LISTEN = ['/ip4/0.0.0.0/tcp/0', '/ip4/0.0.0.0/tcp/0/ws']

// --- relay (relay-policy.ts) ---
/** Reservations a public node keeps at once. */
export const RELAY_MAX_RESERVATIONS = 256
/** Concurrent inbound hop streams per connection on a public node. */
export const RELAY_MAX_INBOUND_HOP_STREAMS = 64
/** How long a reservation lasts before the client must refresh it (libp2p's default is 2 h). */
export const RELAY_RESERVATION_TTL_MS = 60 * 60 * 1000

// --- connection manager and stream bounds ---
/** Connections a node keeps before pruning. */
export const MAX_CONNECTIONS = 300
/** Inbound streams of one protocol per connection, for protocols without their own bound. */
export const MAX_INBOUND_STREAMS = 32

// --- doctor (reachability.ts, commands/doctor.ts) ---
/** How long `mycelium doctor` without a running daemon observes the network before it reports. */
export const DOCTOR_OBSERVE_MS = 20_000
/** How long a control-socket request may take. */
export const CONTROL_TIMEOUT_MS = 120_000
/** Largest JSON line accepted on the control socket. */
export const CONTROL_MAX_LINE_BYTES = 64 * 1024
/** Interval between status file refreshes and relay checks of the daemon. */
export const STATUS_INTERVAL_MS = 1_000
/** How long the direct upgrader waits for identify on a new relayed connection. */
export const IDENTIFY_WAIT_MS = 10_000
/** Least time between two AutoNAT nudges for the same still-unverified address. */
export const AUTONAT_RENUDGE_MS = 30_000
/** How long the UPnP service collects gateway answers at start-up (libp2p's default is 5 s). */
export const UPNP_INITIAL_SEARCH_MS = 2_000
/** Longest pause between two re-dials of a disconnected bootstrap peer (and one dial's deadline). */
export const BOOTSTRAP_REDIAL_MAX_MS = 5_000
/** How long the reachable side waits for the peer's own direct dial before asking for a reverse dial. */
export const REVERSE_DIAL_GRACE_MS = 500
/** A hole-punched TCP socket idle this long is closed (as libp2p's TCP transport does). */
export const PUNCHED_SOCKET_IDLE_MS = 2 * 60 * 1000
/** How long both sides keep trying to connect during a hole punch. */
export const PUNCH_CONNECT_WINDOW_MS = 5_000
/** Pause between two connect attempts of a hole punch. */
export const PUNCH_RETRY_MS = 100
/** Deadline for Noise + Yamux on a hole-punched socket. */
export const PUNCH_UPGRADE_TIMEOUT_MS = 10_000
/** Least time between two hole punches a peer may ask of us. */
export const PUNCH_MIN_INTERVAL_MS = 5_000

// --- swarm state (node-record.ts) ---
/** The software version a node publishes in its swarm-state record and identify's agent. */
export const SOFTWARE_VERSION = '0.1.0'
/** Address changes within this window are published as one node-record write. */
export const NODE_RECORD_DEBOUNCE_MS = 2_000

// --- model, capability and allocation (model-startup.ts, allocation.ts) ---
/** Folder of cached model content hashes inside the data directory. */
export const MANIFEST_CACHE_DIR = 'manifests'
/** Swarm-state changes within this window trigger one allocation pass. */
export const ALLOCATION_DEBOUNCE_MS = 500
/** An allocation pass also runs this often (presence expiry emits no change event). */
export const ALLOCATION_INTERVAL_MS = 10_000
/** Retry the DHT announcement of our model this often until it lands somewhere. */
export const ANNOUNCE_RETRY_MS = 5_000
/** Re-announce the model on the DHT this often once announced (provider records expire). */
export const ANNOUNCE_REFRESH_MS = 60 * 60 * 1000
/** A published link figure (RTT, bandwidth) is rewritten only when it moves by more than this fraction. */
export const LINK_REPUBLISH_FRACTION = 0.25
/** …and, for RTTs, by more than this many milliseconds. */
export const LINK_REPUBLISH_MIN_MS = 1
/** Peers whose RTT a node publishes at most (the nearest ones). */
export const MAX_PUBLISHED_LINKS = 32
/** Prefix of the per-peer RTT entries in a node record's capabilities. */
export const RTT_CAPABILITY_PREFIX = 'rttMs:'
/** Node-record addresses are merged into the peer store this long after a swarm-state change (ms). */
export const RECORD_ADDRESSES_DEBOUNCE_MS = 250
/** At most this many addresses of one node record are merged into the peer store. */
export const RECORD_ADDRESSES_MAX = 32
/** The load beacon (node/load-beacon.ts): checked this often (ms)… */
export const LOAD_CHECK_MS = 250
/** …published at most this often… */
export const LOAD_PUBLISH_MIN_MS = 500
/** …and at least this often while serving, changed or not. */
export const LOAD_KEEPALIVE_MS = 10_000
/** A peer's load older than this is forgotten (ms). */
export const LOAD_TTL_MS = 30_000
/** Peers whose load a node keeps at most. */
export const LOAD_MAX_PEERS = 4096
/** A load message is at most this many bytes. */
export const LOAD_MAX_MESSAGE_BYTES = 256
/** The published step time is republished only when it moves by more than this fraction. */
export const LOAD_STEP_REPUBLISH_FRACTION = 0.25
