/**
 * The line protocol between `graincluster quickstart` and the
 * `graincluster node --control` children it spawns: one JSON object per line,
 * events and replies on the child's stdout, commands on its stdin. Human logs
 * stay on stderr, so stdout carries nothing else. The child exits when its
 * stdin closes, so children never outlive a parent that died without
 * cleaning up.
 */

import type { NodeConfig } from './config.js'

export interface MemberInfo {
  authority: string
  nodeId: string
  status: string
}

/** Child → parent. */
export type ControlEvent =
  | { t: 'listening'; authority: string; nodeId: string; pid: number }
  | { t: 'up'; authority: string; nodeId: string; pid: number; startMs: number; httpUrl: string | null; config: NodeConfig }
  | { t: 'reply'; id: number; ok: true; value: unknown }
  | { t: 'reply'; id: number; ok: false; code: string; reason: string }
  | { t: 'error'; code: string; reason: string; issues?: string[] }

/** Parent → child; each gets one `reply` with the same id. */
export type ControlCommand =
  | { id: number; cmd: 'members' }
  /** First key `<prefix><i>` whose owner is `owner` (an authority), with its PID. */
  | { id: number; cmd: 'find-key'; kind: string; owner: string; prefix: string; limit: number }
  /** node.ask by key (placement routes it), plus where it was answered and the owner's PID. */
  | { id: number; cmd: 'ask'; kind: string; key: string; method: string; payload?: unknown; timeoutMs: number }
  /** Graceful leave, then exit 0. */
  | { id: number; cmd: 'leave' }

export interface AskReply {
  value: unknown
  pid: string
  ms: number
}

export function encodeLine(o: ControlEvent | ControlCommand): string {
  return `${JSON.stringify(o)}\n`
}

/** undefined for a line that is not a JSON object (ignored, never fatal). */
export function parseLine<T extends { t: string } | { cmd: string }>(line: string): T | undefined {
  try {
    const v: unknown = JSON.parse(line)
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as T) : undefined
  } catch {
    return undefined
  }
}
