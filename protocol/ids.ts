/**
 * Protocol identifiers and versions of the Petal wire protocol.
 *
 * Every id carries a version; a breaking change to a message bumps
 * {@link PROTOCOL_VERSION} and every id that embeds it.
 */

/** Version of the wire protocol embedded in the protocol ids below. */
export const PROTOCOL_VERSION = 1

/** Ask a server for its ServerInfo (one request frame, one reply frame). */
export const PROTOCOL_INFO = '/petal/1/info'

/** A client's inference session with one server: open, runs, cancels, close. */
export const PROTOCOL_INFERENCE = '/petal/1/inference'

/** Server-to-server forwarding of a run's output to the next hop (push mode). */
export const PROTOCOL_PUSH = '/petal/1/push'

/** Kademlia DHT protocol id of the Petal swarm (not the public IPFS DHT). */
export const DHT_PROTOCOL = '/petal/kad/1.0.0'

/**
 * Version of the Petal software, as in package.json (a unit test keeps them in
 * sync). Servers report it in ServerInfo.version.
 */
export const PETAL_VERSION = '0.1.0'
