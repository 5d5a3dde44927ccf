/**
 * PIDs: the address of one grain activation on one node.
 *
 *   grain://127.0.0.1:4050/counter/user%2F42#9f2c4a1b0d3e5f67
 *   └─┬──┘ └──authority───┘ └kind─┘ └─key──┘ └─────nodeId─────┘
 *
 * - authority: `host:port` (IPv4, DNS name, or `[ipv6]:port`), port 1–65535;
 * - kind: the grain kind (letters, digits, `_ . -`, starting with a letter);
 * - key: the grain key, percent-encoded (encodeURIComponent), so a key may
 *   hold any characters, `/` and `#` included; at most 1,024 characters decoded;
 * - nodeId (optional): the incarnation of the node, lower-case hex. Without
 *   it the PID means "whoever holds that authority now".
 *
 * formatPid and parsePid are exact inverses on valid PIDs; every malformed
 * form is an ERR_PID_INVALID with the reason and the offending text.
 */

import { GrainClusterError } from './errors.js'

export interface Pid {
  readonly host: string
  readonly port: number
  /** `host:port` (`[v6]:port` for IPv6). */
  readonly authority: string
  readonly kind: string
  readonly key: string
  readonly nodeId?: string
}

export const PID_SCHEME = 'grain://'
const KIND_RE = /^[A-Za-z][A-Za-z0-9_.-]{0,63}$/
const HOST_RE = /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/
const IPV6_RE = /^[0-9A-Fa-f:.]+$/
const NODE_ID_RE = /^[0-9a-f]{1,32}$/
const MAX_KEY = 1024
const MAX_PID = 4096

function invalid(text: unknown, reason: string): GrainClusterError {
  const pid = typeof text === 'string' ? text.slice(0, 200) : String(typeof text)
  return new GrainClusterError('ERR_PID_INVALID', `invalid PID ${JSON.stringify(pid)}: ${reason}`, { pid, reason })
}

/** Parse `host:port` / `[v6]:port`; the reason says what is wrong. */
export function parseAuthorityText(text: string, whole: string = text): { host: string; port: number; authority: string } {
  let host: string
  let portText: string
  if (text.startsWith('[')) {
    const end = text.indexOf(']')
    if (end < 0) throw invalid(whole, 'IPv6 authority is missing its closing "]"')
    host = text.slice(1, end)
    if (text[end + 1] !== ':') throw invalid(whole, 'authority has no port (expected [ipv6]:port)')
    portText = text.slice(end + 2)
    if (host === '' || !IPV6_RE.test(host) || !host.includes(':')) throw invalid(whole, `"${host}" is not an IPv6 address`)
  } else {
    const colon = text.lastIndexOf(':')
    if (colon < 0) throw invalid(whole, 'authority has no port (expected host:port)')
    host = text.slice(0, colon)
    portText = text.slice(colon + 1)
    if (host === '') throw invalid(whole, 'authority has an empty host')
    if (host.includes(':')) throw invalid(whole, 'IPv6 hosts must be in brackets: [::1]:4050')
    if (!HOST_RE.test(host)) throw invalid(whole, `"${host}" is not a valid host name or IPv4 address`)
  }
  if (!/^[0-9]{1,5}$/.test(portText)) throw invalid(whole, `port "${portText}" is not a number`)
  const port = Number(portText)
  if (port < 1 || port > 65_535) throw invalid(whole, `port ${port} is outside 1–65535`)
  return { host, port, authority: host.includes(':') ? `[${host}]:${port}` : `${host}:${port}` }
}

export function parsePid(text: unknown): Pid {
  if (typeof text !== 'string') throw invalid(text, `a PID is a string, got ${typeof text}`)
  if (text.length === 0) throw invalid(text, 'empty string')
  if (text.length > MAX_PID) throw invalid(text, `longer than ${MAX_PID} characters`)
  // eslint-disable-next-line no-control-regex -- control characters are exactly what we reject
  if (/[\u0000-\u0020\u007f]/.test(text)) throw invalid(text, 'contains whitespace or control characters')
  if (!text.startsWith(PID_SCHEME)) {
    const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):/.exec(text)?.[1]
    throw invalid(text, scheme === undefined ? `missing the ${PID_SCHEME} scheme` : `scheme "${scheme}" is not grain`)
  }
  let rest = text.slice(PID_SCHEME.length)
  let nodeId: string | undefined
  const hash = rest.indexOf('#')
  if (hash >= 0) {
    nodeId = rest.slice(hash + 1)
    rest = rest.slice(0, hash)
    if (!NODE_ID_RE.test(nodeId)) throw invalid(text, `nodeId "${nodeId}" must be 1–32 lower-case hex digits`)
  }
  if (rest.includes('?')) throw invalid(text, 'PIDs have no query part')
  const parts = rest.split('/')
  if (parts.length < 3 || parts[0] === '') throw invalid(text, 'expected grain://host:port/kind/key')
  if (parts.length > 3) throw invalid(text, 'too many path segments: percent-encode "/" in the key as %2F')
  const { host, port, authority } = parseAuthorityText(parts[0]!, text)
  const kind = parts[1]!
  if (kind === '') throw invalid(text, 'empty grain kind')
  if (!KIND_RE.test(kind)) throw invalid(text, `grain kind "${kind}" must match ${KIND_RE}`)
  const rawKey = parts[2]!
  if (rawKey === '') throw invalid(text, 'empty grain key')
  let key: string
  try {
    key = decodeURIComponent(rawKey)
  } catch {
    throw invalid(text, `grain key "${rawKey}" has a broken percent-encoding`)
  }
  if (encodeURIComponent(key) !== rawKey) throw invalid(text, `grain key "${rawKey}" is not in canonical percent-encoding (expected "${encodeURIComponent(key)}")`)
  if (key.length > MAX_KEY) throw invalid(text, `grain key longer than ${MAX_KEY} characters`)
  return nodeId === undefined ? { host, port, authority, kind, key } : { host, port, authority, kind, key, nodeId }
}

/** The canonical text of a PID (validates its parts). */
export function formatPid(p: { authority: string; kind: string; key: string; nodeId?: string | undefined }): string {
  const text = pidTextOf(p.authority, p.kind, p.key, p.nodeId)
  parsePid(text) // throws ERR_PID_INVALID naming the bad part
  return text
}

/**
 * The canonical text of parts that are already valid (an authority and
 * NodeId from the membership table, a registered kind): placement builds
 * one per new key, so it skips formatPid's re-parse. Still throws
 * ERR_PID_INVALID for a key that cannot be encoded.
 */
export function pidTextOf(authority: string, kind: string, key: string, nodeId?: string): string {
  let encoded: string
  try {
    encoded = encodeURIComponent(key)
  } catch {
    throw invalid(key, 'grain key contains a lone UTF-16 surrogate and cannot be encoded')
  }
  return `${PID_SCHEME}${authority}/${kind}/${encoded}${nodeId === undefined ? '' : `#${nodeId}`}`
}

/** Same grain on the same incarnation (a missing nodeId matches any). */
export function samePid(a: Pid, b: Pid): boolean {
  return a.authority === b.authority && a.kind === b.kind && a.key === b.key && (a.nodeId === undefined || b.nodeId === undefined || a.nodeId === b.nodeId)
}
