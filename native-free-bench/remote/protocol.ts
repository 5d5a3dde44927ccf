/**
 * IPC between the remote scope (parent) and its peer process (peer.ts, node
 * B): JSON messages over the fork() channel, plus a request helper that
 * fails instead of hanging when the child dies or stalls.
 */

import type { ChildProcess } from 'node:child_process'
import type { FailureDetectorInput } from '../../src/cluster/failure-detector/profiles.js'
import type { LatencySummary } from '../lib/stats.js'

/** Parent → peer. */
export type ToPeer =
  | {
      type: 'start'
      /** Port node B binds; seeds are the same list on every node. */
      port: number
      seeds: string[]
      clusterName: string
      secret: string
      workers: number
      partitions: number
      spinMicros: number
      /** The same detector settings on every node of the scope. */
      failureDetector: FailureDetectorInput
    }
  | { type: 'stats' }
  /** Sequential local asks add(1) on node B itself (the ring hop of a remote ask, without the network). */
  | { type: 'local-asks'; n: number; warm: number }
  | { type: 'close' }

/** Counters of node B since it started (events counted by subscription, transport from its stats). */
export interface PeerStats {
  deadletters: number
  /** Frames B refused (malformed, undecodable, ...): must stay 0. */
  framesRejected: number
  /**
   * Frames B's transport had accepted but not written when their connection
   * closed, handed back to be sent again (transport.stats.framesReturned):
   * (c) cuts A2's connection on purpose, which may catch a reply or a
   * heartbeat in the queue.
   */
  framesReturned: number
  /** Activations B released to rebalance (placement.rebalanced): a released counter loses its count. */
  released: number
  /** Members B sees Up. */
  upMembers: number
  /** The first few rejections and dead letters (code: reason), for the scope's error message. */
  problems: string[]
  /** B's last connection and membership events (lifecycle-log.ts), for an error message. */
  log: string[]
  ringFull: number
  framesIn: number
  bytesIn: number
  heapUsed: number
}

/** Peer → parent. */
export type FromPeer =
  | { type: 'ready'; authority: string; nodeId: string; rawPort: number; workers: number }
  | ({ type: 'stats' } & PeerStats)
  | ({ type: 'local-asks' } & LatencySummary)
  | { type: 'closed' }
  | { type: 'error'; message: string }

/** Send `msg` and resolve with the next message of type `reply`; rejects on an 'error' message, exit, or timeout. */
export function request<T extends FromPeer['type']>(child: ChildProcess, msg: ToPeer | null, reply: T, timeoutMs: number): Promise<Extract<FromPeer, { type: T }>> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup()
      reject(new Error(`peer process: no '${reply}' within ${timeoutMs} ms`))
    }, timeoutMs)
    const onMessage = (m: FromPeer): void => {
      if (m.type === 'error') {
        cleanup()
        reject(new Error(`peer process: ${m.message}`))
      } else if (m.type === reply) {
        cleanup()
        resolve(m as Extract<FromPeer, { type: T }>)
      }
    }
    const onExit = (code: number | null, signal: string | null): void => {
      cleanup()
      reject(new Error(`peer process exited (code ${String(code)}, signal ${String(signal)}) before '${reply}'`))
    }
    const onError = (e: Error): void => {
      cleanup()
      reject(e)
    }
    const cleanup = (): void => {
      clearTimeout(timer)
      child.off('message', onMessage)
      child.off('exit', onExit)
      child.off('error', onError)
    }
    child.on('message', onMessage)
    child.on('exit', onExit)
    child.on('error', onError)
    if (msg !== null) child.send(msg)
  })
}
