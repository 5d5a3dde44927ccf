import type { EventInit, RuntimeEvent } from '../../observability/events.js'

/** An event as a worker builds it; the main thread stamps category and publishes it. */
export type WorkerEvent = EventInit<RuntimeEvent>
