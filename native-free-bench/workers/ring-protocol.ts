/** Messages between the ring scope (main thread) and workers/ring-consumer.ts. Shared values live here: importing the worker module itself would run it. */

export const FRAME_BYTES = 64

export interface RingConsumerData {
  sab: SharedArrayBuffer
}

export type ToConsumer =
  | { type: 'ring'; frames: number }
  /** Expect `frames` frames packed `framesPerMessage` to a Uint8Array message. */
  | { type: 'pm'; frames: number; framesPerMessage: number }

export type FromConsumer =
  | { type: 'ready' }
  | { type: 'armed' }
  | { type: 'done'; frames: number; bad: number; wakeups: number }
