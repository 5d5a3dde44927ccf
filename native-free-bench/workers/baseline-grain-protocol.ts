/** Messages of the e2e baseline (workers/baseline-grain.ts): JSON text both ways. */

/** Main → worker (JSON.stringify'd). `id` is present on asks only. */
export interface BaselineRequest {
  kind: string
  key: string
  method: string
  payload?: unknown
  id?: number
}

/** Worker → main (JSON.stringify'd): a reply, or a credit for processed tells. */
export type BaselineResponse = { id: number; result?: unknown; error?: string } | { ack: number }

/** The worker acknowledges processed tells in steps of this many. */
export const ACK_EVERY = 16_384
