/**
 * Rendezvous placement lives in common/ (pure hashing) because worker threads
 * use it too: on a membership change each worker releases the activations
 * whose keys moved away. Re-exported here for the cluster plane.
 */
export { type PlacementCandidate, rendezvousOwner, rendezvousWeight } from '../../common/rendezvous.js'
