/**
 * Cluster settings for several GrainNodes in one test process. They share
 * one event loop, so a stall of the loaded test process looks like a cut to
 * the serving lease and, past the test profile's 1.5 s pause, to the failure
 * detector. Detection and the lease are exercised by the multi-process tests
 * (test/cluster) and their unit tests.
 */
export const IN_PROCESS_LEASE_MS = 60_000
export const IN_PROCESS_DETECTOR = { profile: 'test', acceptableHeartbeatPauseMs: 10_000 } as const
