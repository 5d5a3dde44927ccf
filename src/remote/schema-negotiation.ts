/**
 * Schema negotiation (design 3.8, spec 6.1), sans-I/O. Both nodes put
 * `{ kind: supportedVersions[] }` in their handshake ACCEPT; each side then
 * picks, per kind both serve, the highest common version, and stamps its
 * calls of that kind to that peer with it.
 *
 * A kind with NO common version refuses only that kind's calls to that peer
 * (ERR_SCHEMA_MISMATCH naming both sides' versions), not the connection:
 * membership, gossip and every other kind keep working, which is what a
 * rolling upgrade needs. Kinds only one side serves are not negotiated.
 */

import { GrainClusterError } from '../common/errors.js'

/** kind → supported schema versions (ascending). */
export type SchemaVersions = ReadonlyMap<string, readonly number[]>

export interface SchemaMismatch {
  kind: string
  local: readonly number[]
  peer: readonly number[]
}

export interface Negotiated {
  /** kind → highest common version. */
  agreed: Map<string, number>
  /** Kinds both serve with no common version. */
  mismatched: Map<string, SchemaMismatch>
}

export function negotiateSchemas(local: SchemaVersions, peer: SchemaVersions): Negotiated {
  const agreed = new Map<string, number>()
  const mismatched = new Map<string, SchemaMismatch>()
  for (const [kind, mine] of local) {
    const theirs = peer.get(kind)
    if (theirs === undefined) continue
    let best = 0
    for (const v of mine) if (v > best && theirs.includes(v)) best = v
    if (best > 0) agreed.set(kind, best)
    else mismatched.set(kind, { kind, local: mine, peer: theirs })
  }
  return { agreed, mismatched }
}

function list(kind: string, versions: readonly number[]): string {
  return `${kind} ${versions.map((v) => `v${v}`).join(',')}`
}

export function mismatchReason(m: SchemaMismatch, peerAuthority: string): string {
  return `schema mismatch: caller speaks ${list(m.kind, m.local)}; ${peerAuthority} serves ${list(m.kind, m.peer)} (no common version)`
}

/** The error a call of a mismatched kind to that peer fails with. */
export function mismatchError(m: SchemaMismatch, peerAuthority: string, details: Record<string, unknown> = {}): GrainClusterError {
  return new GrainClusterError('ERR_SCHEMA_MISMATCH', mismatchReason(m, peerAuthority), {
    kind: m.kind,
    authority: peerAuthority,
    callerVersions: [...m.local],
    servedVersions: [...m.peer],
    ...details,
  })
}

/**
 * Per-peer outcome of the negotiation, kept by the node's remote endpoint.
 * A peer that sent no versions (an older node) has no entry: its calls are
 * stamped with this node's own version and checked by the serving worker.
 */
export class PeerSchemas {
  readonly #byAuthority = new Map<string, Negotiated>()

  constructor(readonly local: SchemaVersions) {}

  /** Record a peer's versions; returns the kinds with no common version (to report). */
  peerUp(authority: string, peer: SchemaVersions | undefined): SchemaMismatch[] {
    if (peer === undefined) {
      this.#byAuthority.delete(authority)
      return []
    }
    const n = negotiateSchemas(this.local, peer)
    this.#byAuthority.set(authority, n)
    return [...n.mismatched.values()]
  }

  /**
   * Version to stamp on a call of `kind` to `authority`: the agreed one, else
   * this node's own (first choice: its highest), else 0 (unspecified: a kind
   * this node does not serve). Throws ERR_SCHEMA_MISMATCH when the peer
   * serves the kind with no common version.
   */
  versionFor(authority: string, kind: string, ownVersion: number | undefined): number {
    const n = this.#byAuthority.get(authority)
    if (n !== undefined) {
      const v = n.agreed.get(kind)
      if (v !== undefined) return v
      const m = n.mismatched.get(kind)
      if (m !== undefined) throw mismatchError(m, authority)
    }
    return ownVersion ?? 0
  }

  mismatchFor(authority: string, kind: string): SchemaMismatch | undefined {
    return this.#byAuthority.get(authority)?.mismatched.get(kind)
  }
}

/** This node's versions per stateful kind, from what its workers reported. */
export function schemaVersionsOf(kinds: ReadonlyMap<string, { readonly stateless: boolean; readonly supportedSchemaVersions: readonly number[] }>): SchemaVersions {
  const out = new Map<string, readonly number[]>()
  for (const [kind, k] of kinds) if (!k.stateless) out.set(kind, k.supportedSchemaVersions)
  return out
}

// ------------------------------------------------------------------ encoding

/** Bytes of `schemas` as the ACCEPT section (u16 count, then per kind: str kind, u8 n, n × u16). */
export function schemaSectionBytes(schemas: SchemaVersions, utf8Length: (s: string) => number): number {
  let n = 2
  for (const [kind, vs] of schemas) n += 2 + utf8Length(kind) + 1 + 2 * vs.length
  return n
}
