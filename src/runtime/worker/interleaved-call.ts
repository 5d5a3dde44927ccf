/**
 * The context an interleave call's handler receives. Such a call holds
 * nothing and runs while another call may hold the key, so the
 * activation's own context would hand its asks the holder's call chain:
 * a grain they reach could then call back into this key as part of the
 * holding call and run inside it (or be refused as a deadlock), though it
 * belongs to another call. Here asks carry the interleave call's own chain
 * (the one its request arrived with, if any), as Orleans' call context
 * follows the request, not the activation. Everything else is the
 * activation's.
 */

import type { PublishResult } from '../../common/publish-result.js'
import type { GrainContext } from '../../grains/grain-context.js'
import type { Activation } from './activation.js'

export class InterleavedCall implements GrainContext {
  constructor(
    readonly activation: Activation,
    /** The chain the call's request carried (undefined: a call from outside any grain call). */
    readonly chain: string | undefined,
  ) {}

  get kind(): string {
    return this.activation.kind
  }

  get key(): string {
    return this.activation.key
  }

  get state(): unknown {
    return this.activation.state
  }

  set state(s: unknown) {
    this.activation.state = s
  }

  tell(kind: string, key: string, method: string, payload?: unknown): void {
    this.activation.tell(kind, key, method, payload)
  }

  ask<R = unknown>(kind: string, key: string, method: string, payload?: unknown, options?: { timeoutMs?: number }): Promise<R> {
    return this.activation.host.ask<R>(kind, key, method, payload, options?.timeoutMs, this.chain)
  }

  tellPid(pid: string, method: string, payload?: unknown): void {
    this.activation.tellPid(pid, method, payload)
  }

  askPid<R = unknown>(pid: string, method: string, payload?: unknown, options?: { timeoutMs?: number }): Promise<R> {
    return this.activation.host.askPid<R>(pid, method, payload, options?.timeoutMs, this.chain)
  }

  whenWritable(pid?: string, options?: { timeoutMs?: number }): Promise<void> {
    return this.activation.whenWritable(pid, options)
  }

  publish(topic: string, payload?: unknown, options?: { timeoutMs?: number }): Promise<PublishResult> {
    return this.activation.publish(topic, payload, options)
  }

  subscribe(topic: string, method: string): Promise<void> {
    return this.activation.subscribe(topic, method)
  }

  unsubscribe(topic: string, method: string): Promise<boolean> {
    return this.activation.unsubscribe(topic, method)
  }

  deactivate(): void {
    this.activation.deactivate()
  }
}
