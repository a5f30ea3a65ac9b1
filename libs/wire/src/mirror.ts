/**
 * What an agent holds: the state of its last applied version, with a running
 * digest. The simulator uses it as is; the real agent can use it as its
 * desired state and diff it against the kernel.
 */
import { applyDelta, emptyHostState, StateDigest, type HostDelta, type HostState } from '#sdn/compiler';

export type ApplyResult = { ok: true } | { ok: false; reason: string };

export class StateMirror {
  state: HostState = emptyHostState();
  digest = new StateDigest(false);
  version = 0;
  epoch = '';
  revision = 0;

  /** Replaces the state; fails when the content does not match the announced digest. */
  applySnapshot(m: { epoch: string; version: number; revision: number; digest: string; state: HostState }): ApplyResult {
    const d = StateDigest.of(m.state, false);
    if (d.value() !== m.digest) return { ok: false, reason: `snapshot digest ${d.value()} != announced ${m.digest}` };
    this.state = m.state;
    this.digest = d;
    this.version = m.version;
    this.epoch = m.epoch;
    this.revision = m.revision;
    return { ok: true };
  }

  /**
   * Applies a delta in place. On a digest mismatch the state is left as
   * applied (it is no longer trustworthy): nack, and the controller answers
   * with a snapshot.
   */
  applyDelta(m: { epoch: string; fromVersion: number; version: number; revision: number; digest: string; delta: HostDelta }): ApplyResult {
    applyDelta(this.state, m.delta, this.digest);
    const got = this.digest.value();
    if (got !== m.digest) return { ok: false, reason: `state digest ${got} after version ${m.version} != announced ${m.digest}` };
    this.version = m.version;
    this.epoch = m.epoch;
    this.revision = m.revision;
    return { ok: true };
  }
}
